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

/// An Ed25519 key made from `seed`: the same seed, the same key.
pub fn ed25519_key(seed: u8) -> russh::keys::PrivateKey {
    russh::keys::PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(
        &[seed; 32],
    ))
}

/// A certificate of `kind` for `key`'s public half, valid over `valid`
/// (Unix seconds), with the key id `id`: the caller names the principals
/// and signs it.
pub fn certificate_builder(
    key: &russh::keys::PrivateKey,
    kind: russh::keys::ssh_key::certificate::CertType,
    valid: std::ops::Range<u64>,
    id: &str,
) -> russh::keys::ssh_key::certificate::Builder {
    let public = key.public_key().key_data().clone();
    let mut b =
        russh::keys::ssh_key::certificate::Builder::new([7u8; 16], public, valid.start, valid.end)
            .expect("builder");
    b.cert_type(kind).expect("type");
    b.key_id(id).expect("id");
    b
}
