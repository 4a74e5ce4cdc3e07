//! What the in-memory tests of the FTP session and of SFTP share: server
//! options over a local disk, with one user, alice, whose password is `pw`.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use ferry_accounts::{Authenticator, ConfigStore};
use ferry_config::Config;
use ferry_storage::local::LocalDisk;

use crate::options::ServerOptions;

fn alice_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| ferry_accounts::password::hash("pw").expect("hash"))
}

/// Options with files under `root` and a clock stopped at the epoch; `alice`
/// holds the rest of alice's `[[users]]` entry (settings after her password).
pub fn options_with_alice(root: &Path, alice: &str) -> ServerOptions {
    let config = Config::parse(&format!(
        "[[users]]\nname = \"alice\"\npassword_hash = \"{}\"\n{alice}",
        alice_hash()
    ))
    .expect("config");
    let store = ConfigStore::from_config(&config).expect("store");
    let accounts = Authenticator::new(vec![Arc::new(store)], &config.anonymous).expect("auth");
    let disk = LocalDisk::new(root).expect("disk");
    let mut opts = ServerOptions::from_config(&config, Arc::new(disk), accounts);
    opts.clock = Arc::new(|| SystemTime::UNIX_EPOCH);
    opts
}
