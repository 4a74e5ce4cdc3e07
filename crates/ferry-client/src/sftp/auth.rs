//! Signing in to an SSH server (RFC 4252) as the SFTP client.
//!
//! The order, as OpenSSH's by default:
//!
//! 1. the password, when one is known (the URL's, `--user`'s or ~/.netrc's);
//! 2. public keys: the `--identity` files when any are given (and only
//!    those); otherwise the keys an SSH agent holds (`SSH_AUTH_SOCK`), then
//!    `~/.ssh/id_ed25519`, `~/.ssh/id_ecdsa` and `~/.ssh/id_rsa` where they
//!    exist;
//! 3. a password asked through [`ConnectOptions::ask_password`].
//!
//! A password goes by the `password` method; a server that does not take
//! that method but takes `keyboard-interactive` (RFC 4256: sshd checking
//! passwords through PAM, ferry with `sftp.authentication` so set) is given
//! it as the answer to its first question that is not echoed. Any other
//! question (a one-time code) is asked of the person, as OpenSSH does; with
//! nobody to ask, the sign-in fails and says what the server asked.
//!
//! A key file with an OpenSSH certificate beside it (`KEY-cert.pub`, for
//! that key, as `ssh-keygen -s` writes it) is offered as the certificate
//! first, then as the bare key, as OpenSSH does: servers that trust the
//! certificate's authority (sshd's `TrustedUserCAKeys`, ferry's
//! `sftp.trusted_user_ca_keys`) take it without listing the key. An RSA
//! key's certificate is offered only when the agent signs for it (russh
//! would sign it with SHA-1 here). Certificates the agent holds (`ssh-add`
//! adds a key's `-cert.pub` with it) are offered before the agent's keys,
//! where no `--identity` is given.
//!
//! A key file encrypted with a passphrase is signed with by the agent when the
//! agent holds it (`ssh-add`), else decrypted with a passphrase asked through
//! the same prompt; with nobody to ask, a named key is an error and a default
//! one is skipped.
//!
//! RSA keys sign with SHA-2 (`rsa-sha2-512` or `-256`, RFC 8332), whichever
//! the server lists in `server-sig-algs`; a server that takes only `ssh-rsa`
//! (SHA-1) is not offered RSA keys, as OpenSSH since 8.8. An RSA key file is
//! signed with by the `rsa` crate, whose private-key operations carry a timing
//! advisory (RUSTSEC-2023-0071); the client signs once per sign-in, so a
//! server cannot gather the many timings the attack needs (docs/client.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::MethodKind;
use russh::client::{self, KeyboardInteractiveAuthResponse};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Certificate, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};

use super::SshPeer;
use crate::session::ConnectOptions;
use crate::url::FtpUrl;

/// An SSH agent reached through its Unix socket.
type Agent = AgentClient<tokio::net::UnixStream>;

/// The key files tried when no `--identity` is given, in `~/.ssh`.
const DEFAULT_KEYS: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// A key the client may offer, before it is read.
enum Candidate {
    /// A key the agent holds.
    Agent { key: PublicKey, comment: String },
    /// A certificate the agent holds (`ssh-add` of a key with its
    /// `-cert.pub`), for a key it signs with.
    AgentCertificate {
        cert: Box<Certificate>,
        comment: String,
    },
    /// A private key file; `explicit` when named by `--identity`: such a key
    /// that cannot be used is an error, a default one is skipped.
    File { path: PathBuf, explicit: bool },
}

/// How an offered key signs.
enum Signer {
    /// The private key is in memory (a file without a passphrase, or one
    /// decrypted with it).
    Local(Box<PrivateKey>),
    /// The agent signs; only the public half is here.
    Agent(PublicKey),
}

impl Signer {
    fn key_data(&self) -> &KeyData {
        match self {
            Signer::Local(key) => key.public_key().key_data(),
            Signer::Agent(key) => key.key_data(),
        }
    }
}

/// The hash an RSA key signs with at this server: the best of `rsa-sha2-512`
/// and `-256` its `server-sig-algs` lists (SHA-512 when it sends no list, as
/// servers before RFC 8308 that know RFC 8332 take it); `None` when it lists
/// only SHA-1 `ssh-rsa`, which is not used.
async fn rsa_hash(ssh: &client::Handle<SshPeer>) -> Option<HashAlg> {
    match ssh.best_supported_rsa_hash().await {
        Ok(Some(best)) => best,
        Ok(None) | Err(_) => Some(HashAlg::Sha512),
    }
}

/// Password, then keys, then a password asked for. The error names what was
/// tried and what the server would take.
pub(super) async fn authenticate(
    ssh: &mut client::Handle<SshPeer>,
    user: &str,
    url: &FtpUrl,
    options: &ConnectOptions,
) -> Result<(), String> {
    let mut tried = Vec::new();
    let mut server_takes = String::new();
    let mut note = |result: client::AuthResult, what: String| -> bool {
        match result {
            client::AuthResult::Success => true,
            client::AuthResult::Failure {
                remaining_methods, ..
            } => {
                server_takes = remaining_methods
                    .iter()
                    .map(|m| <&str>::from(m).to_owned())
                    .collect::<Vec<_>>()
                    .join(", ");
                tried.push(what);
                false
            }
        }
    };
    if let Some(password) = &url.password {
        let (result, method) = try_password(ssh, user, password, options).await?;
        if note(result, method.to_owned()) {
            return Ok(());
        }
    }

    let mut agent = connect_agent().await;
    let (agent_keys, agent_certs) = match agent.as_mut() {
        Some(agent) => agent_identities(agent).await,
        None => (Vec::new(), Vec::new()),
    };
    let candidates: Vec<Candidate> = if options.identities.is_empty() {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let defaults = home
            .into_iter()
            .flat_map(|h| DEFAULT_KEYS.map(|name| h.join(".ssh").join(name)))
            .filter(|path| path.exists())
            .map(|path| Candidate::File {
                path,
                explicit: false,
            });
        agent_certs
            .into_iter()
            .map(|(cert, comment)| Candidate::AgentCertificate {
                cert: Box::new(cert),
                comment,
            })
            .chain(agent_keys.iter().map(|(key, comment)| Candidate::Agent {
                key: key.clone(),
                comment: comment.clone(),
            }))
            .chain(defaults)
            .collect()
    } else {
        options
            .identities
            .iter()
            .map(|path| Candidate::File {
                path: path.clone(),
                explicit: true,
            })
            .collect()
    };
    let mut offered: Vec<KeyData> = Vec::new();
    // Asked of the server at the first RSA key.
    let mut rsa_sha2: Option<Option<HashAlg>> = None;
    let mut skipped = Vec::new();
    for candidate in candidates {
        // A certificate to offer before the bare key, named; `only`: the
        // candidate is the certificate alone.
        let (name, signer, certificate, only) = match candidate {
            Candidate::Agent { key, comment } => {
                let name = if comment.is_empty() {
                    key.fingerprint(HashAlg::Sha256).to_string()
                } else {
                    comment
                };
                (format!("agent key {name}"), Signer::Agent(key), None, false)
            }
            Candidate::AgentCertificate { cert, comment } => {
                let key = PublicKey::new(cert.public_key().clone(), "");
                let name = format!("agent certificate {comment}");
                (name.clone(), Signer::Agent(key), Some((name, *cert)), true)
            }
            Candidate::File { path, explicit } => {
                match read_key(&path, explicit, &agent_keys, options)? {
                    Some(signer) => {
                        let certificate = certificate_beside(&path, signer.key_data())
                            .map(|(p, c)| (format!("certificate {}", p.display()), c));
                        (
                            format!("key {}", path.display()),
                            signer,
                            certificate,
                            false,
                        )
                    }
                    None => continue,
                }
            }
        };
        if !only {
            if offered.contains(signer.key_data()) {
                continue;
            }
            offered.push(signer.key_data().clone());
        }
        let hash = if signer.key_data().is_rsa() {
            if rsa_sha2.is_none() {
                rsa_sha2 = Some(rsa_hash(ssh).await);
            }
            match rsa_sha2.flatten() {
                Some(hash) => Some(hash),
                None => {
                    skipped.push(format!("{name} (RSA: the server takes only SHA-1 ssh-rsa)"));
                    continue;
                }
            }
        } else {
            None
        };
        if let Some((cert_name, cert)) = certificate {
            let result = match &signer {
                Signer::Local(key) if !key.algorithm().is_rsa() => Some(
                    ssh.authenticate_openssh_cert(user, Arc::new((**key).clone()), cert)
                        .await
                        .map_err(broke_off)?,
                ),
                Signer::Local(_) => {
                    skipped.push(format!("{cert_name} (RSA: only through an agent)"));
                    None
                }
                Signer::Agent(_) => match agent.as_mut() {
                    Some(agent) => Some(
                        ssh.authenticate_certificate_with(user, cert, hash, agent)
                            .await
                            .map_err(|e| {
                                format!("the SSH agent did not sign with {cert_name}: {e}")
                            })?,
                    ),
                    None => None,
                },
            };
            if let Some(result) = result
                && note(result, cert_name)
            {
                return Ok(());
            }
        }
        if only {
            continue;
        }
        let result = match signer {
            Signer::Local(key) => ssh
                .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(*key), hash))
                .await
                .map_err(broke_off)?,
            Signer::Agent(key) => {
                let Some(agent) = agent.as_mut() else {
                    continue;
                };
                ssh.authenticate_publickey_with(user, key, hash, agent)
                    .await
                    .map_err(|e| format!("the SSH agent did not sign with {name}: {e}"))?
            }
        };
        if note(result, name) {
            return Ok(());
        }
    }

    if url.password.is_none()
        && let Some(ask) = &options.ask_password
        && let Some(password) = ask.ask(&format!("Password for {user}@{}: ", url.host))
    {
        let (result, method) = try_password(ssh, user, &password, options).await?;
        if note(result, method.to_owned()) {
            return Ok(());
        }
    }
    let mut tried = if tried.is_empty() {
        "no password and no key to offer".to_owned()
    } else {
        format!("tried {}", tried.join(", "))
    };
    if !skipped.is_empty() {
        tried.push_str(&format!("; not offered: {}", skipped.join(", ")));
    }
    Err(format!(
        "authentication as {user} failed ({tried}; the server accepts: {})",
        if server_takes.is_empty() {
            "nothing it said"
        } else {
            &server_takes
        }
    ))
}

/// The OpenSSH certificate beside the key file `path` (`KEY-cert.pub`),
/// where there is one for the key `key`; a file that is not a certificate,
/// or one for another key, is left alone, as OpenSSH does.
fn certificate_beside(path: &Path, key: &KeyData) -> Option<(PathBuf, Certificate)> {
    let mut name = path.as_os_str().to_owned();
    name.push("-cert.pub");
    let cert_path = PathBuf::from(name);
    let cert = Certificate::read_file(&cert_path).ok()?;
    (cert.public_key() == key).then_some((cert_path, cert))
}

/// One password attempt: by the `password` method, or by
/// `keyboard-interactive` where the server's refusal lists only that one of
/// the two. Also says which method decided.
async fn try_password(
    ssh: &mut client::Handle<SshPeer>,
    user: &str,
    password: &str,
    options: &ConnectOptions,
) -> Result<(client::AuthResult, &'static str), String> {
    let result = ssh
        .authenticate_password(user, password)
        .await
        .map_err(broke_off)?;
    match &result {
        client::AuthResult::Failure {
            remaining_methods, ..
        } if !remaining_methods.contains(&MethodKind::Password)
            && remaining_methods.contains(&MethodKind::KeyboardInteractive) =>
        {
            let result = keyboard_interactive(ssh, user, password, options).await?;
            Ok((result, "keyboard-interactive"))
        }
        _ => Ok((result, "password")),
    }
}

/// How many rounds of questions keyboard-interactive may take before the
/// client gives up on a server that keeps asking (PAM stacks ask one or
/// two; sshd sends an empty round after the last).
const KEYBOARD_INTERACTIVE_ROUNDS: usize = 8;

/// Keyboard-interactive sign-in (RFC 4256): `password` answers the first
/// question that is not echoed, the person is asked any other (through
/// [`ConnectOptions::ask_password`]; an error when nobody can be asked).
async fn keyboard_interactive(
    ssh: &mut client::Handle<SshPeer>,
    user: &str,
    password: &str,
    options: &ConnectOptions,
) -> Result<client::AuthResult, String> {
    let mut reply = ssh
        .authenticate_keyboard_interactive_start(user, None)
        .await
        .map_err(broke_off)?;
    let mut password = Some(password);
    for _ in 0..KEYBOARD_INTERACTIVE_ROUNDS {
        let prompts = match reply {
            KeyboardInteractiveAuthResponse::Success => return Ok(client::AuthResult::Success),
            KeyboardInteractiveAuthResponse::Failure {
                remaining_methods,
                partial_success,
            } => {
                return Ok(client::AuthResult::Failure {
                    remaining_methods,
                    partial_success,
                });
            }
            KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => prompts,
        };
        let mut answers = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            if !prompt.echo
                && let Some(known) = password.take()
            {
                answers.push(known.to_owned());
                continue;
            }
            let asked = options
                .ask_password
                .as_ref()
                .and_then(|ask| ask.ask(&prompt.prompt));
            match asked {
                Some(answer) => answers.push(answer),
                None => {
                    return Err(format!(
                        "the server asks {:?} (keyboard-interactive) and nobody can answer: \
                         run ferry on a terminal or with SSH_ASKPASS",
                        prompt.prompt.trim()
                    ));
                }
            }
        }
        reply = ssh
            .authenticate_keyboard_interactive_respond(answers)
            .await
            .map_err(broke_off)?;
    }
    Err(format!(
        "the server asked more than {KEYBOARD_INTERACTIVE_ROUNDS} rounds of questions \
         (keyboard-interactive): giving up"
    ))
}

/// The SSH connection failed during authentication.
fn broke_off(e: russh::Error) -> String {
    format!("authentication broke off: {e}")
}

/// The agent at `SSH_AUTH_SOCK`, when there is one that answers.
async fn connect_agent() -> Option<Agent> {
    std::env::var_os("SSH_AUTH_SOCK")?;
    match AgentClient::connect_env().await {
        Ok(agent) => Some(agent),
        Err(e) => {
            tracing::debug!("no SSH agent: {e}");
            None
        }
    }
}

/// The keys the agent holds, and the certificates it holds for some of
/// them.
async fn agent_identities(
    agent: &mut Agent,
) -> (Vec<(PublicKey, String)>, Vec<(Certificate, String)>) {
    let (mut keys, mut certs) = (Vec::new(), Vec::new());
    match agent.request_identities().await {
        Ok(ids) => {
            for id in ids {
                match id {
                    AgentIdentity::PublicKey { key, comment } => keys.push((key, comment)),
                    AgentIdentity::Certificate {
                        certificate,
                        comment,
                    } => certs.push((certificate, comment)),
                }
            }
        }
        Err(e) => tracing::debug!("the SSH agent did not list its keys: {e}"),
    }
    (keys, certs)
}

/// How many times a key's passphrase is asked before the key is given up,
/// as OpenSSH's `NumberOfPasswordPrompts`.
const PASSPHRASE_ATTEMPTS: u32 = 3;

/// Why an encrypted key file cannot be used without a passphrase.
fn no_passphrase(path: &Path) -> String {
    format!(
        "{} is encrypted with a passphrase and none was given: add it to ssh-agent (ssh-add), \
         or run ferry on a terminal or with SSH_ASKPASS",
        path.display()
    )
}

/// Reads a key file into a signer: as it is, through the agent when the file
/// is encrypted and the agent holds it, or decrypted with a passphrase asked
/// for (again after a wrong one, [`PASSPHRASE_ATTEMPTS`] times in all).
/// `Ok(None)`: a default key that cannot be used, skipped.
fn read_key(
    path: &Path,
    explicit: bool,
    agent_keys: &[(PublicKey, String)],
    options: &ConnectOptions,
) -> Result<Option<Signer>, String> {
    let refuse = |why: String| {
        if explicit {
            Err(why)
        } else {
            tracing::debug!("skipping {why}");
            Ok(None)
        }
    };
    let key = match russh::keys::load_secret_key(path, None) {
        Ok(key) => key,
        Err(russh::keys::Error::KeyIsEncrypted) => {
            if let Some(public) = public_half(path)
                && agent_keys
                    .iter()
                    .any(|(k, _)| k.key_data() == public.key_data())
            {
                return Ok(Some(Signer::Agent(public)));
            }
            let Some(ask) = options.ask_password.as_ref() else {
                return refuse(no_passphrase(path));
            };
            let mut prompt = format!("Passphrase for key {}: ", path.display());
            let mut attempt = 1;
            loop {
                let passphrase = match ask.ask(&prompt) {
                    Some(p) if !p.is_empty() => p,
                    _ => return refuse(no_passphrase(path)),
                };
                match russh::keys::load_secret_key(path, Some(&passphrase)) {
                    Ok(key) => break key,
                    Err(e) if attempt >= PASSPHRASE_ATTEMPTS => {
                        return Err(format!(
                            "cannot decrypt {} with the passphrases given ({attempt} tries): {e}",
                            path.display()
                        ));
                    }
                    Err(_) => {
                        attempt += 1;
                        prompt = format!("Bad passphrase, try again for {}: ", path.display());
                    }
                }
            }
        }
        Err(e) => return refuse(format!("cannot read the key {}: {e}", path.display())),
    };
    Ok(Some(Signer::Local(Box::new(key))))
}

/// The public half of a key file without decrypting it: OpenSSH's format
/// keeps it in the clear, else `FILE.pub`.
fn public_half(path: &Path) -> Option<PublicKey> {
    if let Ok(key) = PrivateKey::read_openssh_file(path) {
        return Some(key.public_key().clone());
    }
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    PublicKey::read_openssh_file(Path::new(&pub_path)).ok()
}
