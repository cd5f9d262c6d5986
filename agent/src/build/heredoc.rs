//! Here-documents (`RUN <<EOF`, `COPY <<EOF /dest`), as BuildKit runs them.
//!
//! RUN: a bare `RUN <<EOF` runs the document as a shell script; a command
//! with here-documents (`RUN <<EOF bash`, `RUN cat <<A <<B > f`) runs as the
//! shell script it is, the documents after it, so the shell feeds them to
//! the command exactly as a shell would. Variables in them are the shell's
//! at run time (a quoted delimiter keeps them literal, as in sh).
//! COPY: each document becomes a file named after its delimiter, its text
//! expanded with the build's variables unless the delimiter is quoted.

use std::path::Path;

use super::dockerfile::HereDoc;
use super::error::{BuildError, Result};

/// The argv of a RUN whose shell-form `command` carries `docs`.
pub fn run_argv(shell: Vec<String>, command: &str, docs: &[HereDoc]) -> Result<Vec<String>> {
    if is_bare(command) {
        let [doc] = docs else {
            return Err(BuildError::invalid(
                "RUN with several here-documents needs a command to read them",
            ));
        };
        if doc.body.starts_with("#!") {
            return Err(BuildError::Unsupported(
                "a RUN here-document with its own interpreter line (#!); use RUN <<EOF INTERPRETER"
                    .into(),
            ));
        }
        let mut argv = shell;
        argv.push(doc.body.clone());
        return Ok(argv);
    }
    let mut script = command.to_string();
    script.push('\n');
    for d in docs {
        script.push_str(&d.body);
        if !d.body.is_empty() && !d.body.ends_with('\n') {
            script.push('\n');
        }
        script.push_str(&d.name);
        script.push('\n');
    }
    let mut argv = shell;
    argv.push(script);
    Ok(argv)
}

/// Whether `command` is nothing but here-document markers (`<<EOF`,
/// `<<-EOF`, `<<'EOF'`, `<<"EOF"`).
fn is_bare(command: &str) -> bool {
    command.split_whitespace().all(|w| w.starts_with("<<"))
}

/// Writes each document of a COPY into `dir` as a file named after its
/// delimiter (mode 0644), its body passed through `expand` first when the
/// delimiter was not quoted. Returns the names, in order.
pub fn write_files(
    dir: &Path,
    docs: &[HereDoc],
    expand: &dyn Fn(&str) -> Result<String>,
) -> Result<Vec<String>> {
    crate::state_dir::create_private_dir(dir)
        .map_err(|e| BuildError::io("making the here-document directory", e))?;
    let mut names = Vec::new();
    for d in docs {
        if d.name.is_empty() || d.name.contains('/') || d.name == "." || d.name == ".." {
            return Err(BuildError::invalid(format!(
                "here-document name {:?} cannot name a file",
                crate::error::capped(&d.name)
            )));
        }
        let body = if d.expand {
            expand(&d.body)?
        } else {
            d.body.clone()
        };
        let path = dir.join(&d.name);
        std::fs::write(&path, body).map_err(|e| BuildError::io("writing a here-document", e))?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .map_err(|e| BuildError::io("writing a here-document", e))?;
        names.push(d.name.clone());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str, body: &str) -> HereDoc {
        HereDoc {
            name: name.into(),
            expand: true,
            body: body.into(),
        }
    }

    fn sh() -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into()]
    }

    #[test]
    fn a_bare_document_is_the_script_and_a_command_reads_its_documents() {
        let argv = run_argv(sh(), "<<EOF", &[doc("EOF", "echo 1\necho 2\n")]).unwrap();
        assert_eq!(argv, ["/bin/sh", "-c", "echo 1\necho 2\n"]);
        let argv = run_argv(sh(), "<<'END' bash", &[doc("END", "echo $HOME\n")]).unwrap();
        assert_eq!(argv[2], "<<'END' bash\necho $HOME\nEND\n");
        let two = [doc("A", "a\n"), doc("B", "b")];
        let argv = run_argv(sh(), "cat <<A <<B > /f", &two).unwrap();
        assert_eq!(argv[2], "cat <<A <<B > /f\na\nA\nb\nB\n");
        assert!(run_argv(sh(), "<<A <<B", &two).is_err());
        assert!(matches!(
            run_argv(sh(), "<<EOF", &[doc("EOF", "#!/usr/bin/env python3\n")]),
            Err(BuildError::Unsupported(_))
        ));
    }

    #[test]
    fn copy_documents_become_files_expanded_unless_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let mut quoted = doc("raw", "$X\n");
        quoted.expand = false;
        let docs = [doc("conf", "$X\n"), quoted];
        let names =
            write_files(&dir.path().join("h"), &docs, &|s| Ok(s.replace("$X", "x"))).unwrap();
        assert_eq!(names, ["conf", "raw"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("h/conf")).unwrap(),
            "x\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("h/raw")).unwrap(),
            "$X\n"
        );
        assert!(write_files(&dir.path().join("i"), &[doc("../x", "")], &|s| Ok(s.into())).is_err());
    }
}
