//! CreateNetwork with driver `cni`: what the request may hold, and the
//! list checked (syntax, and every plugin installed) before it is stored.

use super::conflist::Conflist;
use super::invoke::PluginDirs;
use crate::network::user::CreateRequest;
use crate::network::NetworkError;

fn invalid(field: &'static str, msg: impl Into<String>) -> NetworkError {
    NetworkError::InvalidField {
        field,
        msg: msg.into(),
    }
}

/// The list of a `cni` network request (None for a bridge network, which
/// must send none). A CNI network's addresses and rules are its plugins'
/// business: subnet, gateway, internal and IPv6 are refused with it.
pub fn check_create(
    req: &CreateRequest,
    dirs: &PluginDirs,
) -> Result<Option<Conflist>, NetworkError> {
    if req.driver != "cni" {
        if !req.cni_conflist.is_empty() {
            return Err(invalid(
                "cni_conflist",
                "a CNI conflist needs driver \"cni\"",
            ));
        }
        return Ok(None);
    }
    if req.cni_conflist.is_empty() {
        return Err(invalid(
            "cni_conflist",
            "driver \"cni\" needs a CNI conflist",
        ));
    }
    if !req.subnet.is_empty() || !req.gateway.is_empty() || req.internal || req.ipv6 {
        return Err(invalid(
            "driver",
            "a CNI network's addresses and routing come from its conflist: give no subnet, \
             gateway, internal or IPv6 with driver \"cni\"",
        ));
    }
    let list =
        Conflist::parse(&req.cni_conflist).map_err(|e| invalid("cni_conflist", e.to_string()))?;
    dirs.check_all(list.binaries())
        .map_err(|e| invalid("cni_conflist", e.to_string()))?;
    Ok(Some(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(driver: &str, list: &str) -> CreateRequest {
        CreateRequest {
            name: "n".into(),
            driver: driver.into(),
            cni_conflist: list.as_bytes().to_vec(),
            ..CreateRequest::default()
        }
    }

    fn field(r: Result<Option<Conflist>, NetworkError>) -> &'static str {
        match r {
            Err(NetworkError::InvalidField { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn requests_are_checked_against_the_driver_and_installed_plugins() {
        let dir = std::env::temp_dir().join(format!("berth-cni-create-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bridge"), b"").unwrap();
        std::fs::write(dir.join("host-local"), b"").unwrap();
        let dirs = PluginDirs(vec![dir.clone()]);
        let good = r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge","ipam":{"type":"host-local"}}]}"#;
        assert!(check_create(&req("cni", good), &dirs).unwrap().is_some());
        assert!(check_create(&req("", ""), &dirs).unwrap().is_none());
        assert_eq!(
            field(check_create(&req("bridge", good), &dirs)),
            "cni_conflist"
        );
        assert_eq!(field(check_create(&req("cni", ""), &dirs)), "cni_conflist");
        let unknown = good.replace("host-local", "dhcp-nope");
        assert_eq!(
            field(check_create(&req("cni", &unknown), &dirs)),
            "cni_conflist"
        );
        let mut with_subnet = req("cni", good);
        with_subnet.subnet = "10.1.0.0/24".into();
        assert_eq!(field(check_create(&with_subnet, &dirs)), "driver");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
