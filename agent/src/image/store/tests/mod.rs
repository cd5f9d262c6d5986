//! End-to-end tests of the image store with archives built in code.
//! They create device nodes, chown and set trusted xattrs: run as root.

mod builders;
mod fixture;
mod import;
mod lookup;
mod races;
mod refused;
