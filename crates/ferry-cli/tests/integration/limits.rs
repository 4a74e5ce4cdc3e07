//! Account limits over real FTP sessions: quotas, file size, file names,
//! addresses, hours, sessions and rates, each at its boundary.

use crate::support::{FerryServer, limits_config, python_script};

#[test]
fn every_limit_at_its_boundary() {
    let server = FerryServer::start_with(&limits_config());
    let out = python_script("limits.py", &server, &[]);
    assert!(out.contains("limits OK"), "{out}");
    let log = server.log();
    // Refusals are logged with the setting that decided them.
    for setting in ["deny_from", "allow_from", "login_hours", "max_sessions"] {
        assert!(log.contains(setting), "no log line names {setting}");
    }
}
