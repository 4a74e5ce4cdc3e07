//! Password checks through PAM (`accounts.system_auth = "pam"`), for host
//! accounts whose passwords live elsewhere than /etc/shadow (LDAP or SSSD
//! through pam_sss, Kerberos, one-time passwords), as vsftpd and ProFTPD use
//! it.
//!
//! This is the one module of ferry with `unsafe` code: a call into the C
//! library libpam. It is loaded when first needed (`dlopen("libpam.so.0")`),
//! so ferry builds without PAM's headers and runs where PAM is absent (a
//! check then fails with a message). What the unsafe blocks rely on:
//!
//! - the function types below are those of `<security/pam_appl.h>` of
//!   Linux-PAM, and the structs are laid out as C lays them out (`repr(C)`);
//! - the conversation callback gets, from Linux-PAM, an array of `num_msg`
//!   pointers to messages, and hands back an array of `num_msg` responses
//!   allocated with `calloc`, each answer with `strdup`: PAM frees both with
//!   `free`;
//! - the data the callback reads (user and password) outlives the PAM
//!   handle: it is dropped only after `pam_end`.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::sync::OnceLock;

const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_PERM_DENIED: c_int = 6;
const PAM_AUTH_ERR: c_int = 7;
const PAM_CRED_INSUFFICIENT: c_int = 8;
const PAM_USER_UNKNOWN: c_int = 10;
const PAM_MAXTRIES: c_int = 11;
const PAM_NEW_AUTHTOK_REQD: c_int = 12;
const PAM_ACCT_EXPIRED: c_int = 13;
const PAM_CONV_ERR: c_int = 19;
const PAM_SILENT: c_int = 0x8000;
const PAM_DISALLOW_NULL_AUTHTOK: c_int = 0x0001;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;
/// `pam_set_item`'s item for the client's host (pam_access, logs).
const PAM_RHOST: c_int = 4;

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type Converse =
    extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int;

#[repr(C)]
struct PamConv {
    conv: Converse,
    appdata_ptr: *mut c_void,
}

type PamStart =
    unsafe extern "C" fn(*const c_char, *const c_char, *const PamConv, *mut *mut c_void) -> c_int;
type PamStep = unsafe extern "C" fn(*mut c_void, c_int) -> c_int;
type PamSetItem = unsafe extern "C" fn(*mut c_void, c_int, *const c_void) -> c_int;
type PamStrerror = unsafe extern "C" fn(*mut c_void, c_int) -> *const c_char;

/// libpam's entry points.
struct Libpam {
    start: PamStart,
    authenticate: PamStep,
    acct_mgmt: PamStep,
    end: PamStep,
    set_item: PamSetItem,
    strerror: PamStrerror,
}

/// Why PAM could not give an answer (a wrong password is not an error).
#[derive(Debug, thiserror::Error)]
#[error("PAM service {service}: {message}")]
pub struct PamError {
    pub service: String,
    pub message: String,
}

fn libpam() -> Result<&'static Libpam, String> {
    static LIBPAM: OnceLock<Result<Libpam, String>> = OnceLock::new();
    LIBPAM
        .get_or_init(|| {
            // SAFETY: dlopen and dlsym take NUL-terminated names; a symbol is
            // cast to the type that pam_appl.h declares for it.
            unsafe {
                let lib = libc::dlopen(c"libpam.so.0".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
                if lib.is_null() {
                    return Err("libpam.so.0 cannot be loaded (is PAM installed?)".to_owned());
                }
                let sym = |name: &CStr| {
                    let p = libc::dlsym(lib, name.as_ptr());
                    if p.is_null() {
                        Err(format!("libpam has no {}", name.to_string_lossy()))
                    } else {
                        Ok(p)
                    }
                };
                Ok(Libpam {
                    start: std::mem::transmute::<*mut c_void, PamStart>(sym(c"pam_start")?),
                    authenticate: std::mem::transmute::<*mut c_void, PamStep>(sym(
                        c"pam_authenticate",
                    )?),
                    acct_mgmt: std::mem::transmute::<*mut c_void, PamStep>(sym(c"pam_acct_mgmt")?),
                    end: std::mem::transmute::<*mut c_void, PamStep>(sym(c"pam_end")?),
                    set_item: std::mem::transmute::<*mut c_void, PamSetItem>(sym(c"pam_set_item")?),
                    strerror: std::mem::transmute::<*mut c_void, PamStrerror>(sym(
                        c"pam_strerror",
                    )?),
                })
            }
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// What the conversation answers with.
struct Answers {
    user: CString,
    password: CString,
}

impl Drop for Answers {
    /// Wipes this copy of the password.
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.password).into_bytes();
        // SAFETY: the pointer and length are those of `bytes`, alive here.
        unsafe { libc::explicit_bzero(bytes.as_mut_ptr().cast(), bytes.len()) };
    }
}

/// Answers PAM's prompts: the password where it asks without echo, the user
/// name where it asks with echo; informational messages need no answer.
extern "C" fn converse(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    let Ok(n) = usize::try_from(num_msg) else {
        return PAM_CONV_ERR;
    };
    if n == 0 || msg.is_null() || resp.is_null() || appdata.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: appdata is the `Answers` that `authenticate` keeps alive until
    // after pam_end; msg holds `n` message pointers (Linux-PAM's layout);
    // the responses are allocated as PAM frees them.
    unsafe {
        let answers = &*(appdata as *const Answers);
        let out = libc::calloc(n, std::mem::size_of::<PamResponse>()) as *mut PamResponse;
        if out.is_null() {
            return PAM_BUF_ERR;
        }
        for i in 0..n {
            let m = *msg.add(i);
            let answer = if m.is_null() {
                None
            } else {
                match (*m).msg_style {
                    PAM_PROMPT_ECHO_OFF => Some(&answers.password),
                    PAM_PROMPT_ECHO_ON => Some(&answers.user),
                    PAM_ERROR_MSG | PAM_TEXT_INFO => continue,
                    _ => None,
                }
            };
            let Some(answer) = answer else {
                free_responses(out, i);
                return PAM_CONV_ERR;
            };
            let copy = libc::strdup(answer.as_ptr());
            if copy.is_null() {
                free_responses(out, i);
                return PAM_BUF_ERR;
            }
            (*out.add(i)).resp = copy;
        }
        *resp = out;
    }
    PAM_SUCCESS
}

/// Frees the first `filled` responses (wiping them) and the array.
///
/// SAFETY: `out` was allocated by `converse` with room for `filled` or more.
unsafe fn free_responses(out: *mut PamResponse, filled: usize) {
    unsafe {
        for j in 0..filled {
            let r = (*out.add(j)).resp;
            if !r.is_null() {
                libc::explicit_bzero(r.cast(), libc::strlen(r));
                libc::free(r.cast());
            }
        }
        libc::free(out.cast());
    }
}

/// Whether PAM's `service` lets `user` in from `remote_host` (PAM_RHOST, for
/// pam_access and the modules' logs): authentication with `password` when
/// one is given, then the account's own checks (`pam_acct_mgmt`: expired,
/// locked, outside its hours). Without a password only the account step runs,
/// for a sign-in whose credential was checked elsewhere (an SSH key), as
/// OpenSSH runs it after a key login. Blocks for as long as the modules take:
/// call it off the async workers.
pub fn check(
    service: &str,
    user: &str,
    password: Option<&str>,
    remote_host: Option<&str>,
) -> Result<bool, PamError> {
    let fail = |message: String| PamError {
        service: service.to_owned(),
        message,
    };
    let lib = libpam().map_err(fail)?;
    let nul = |what: &str| fail(format!("the {what} contains a NUL byte"));
    let c_service = CString::new(service).map_err(|_| nul("service name"))?;
    let answers = Box::new(Answers {
        user: CString::new(user).map_err(|_| nul("user name"))?,
        password: CString::new(password.unwrap_or_default()).map_err(|_| nul("password"))?,
    });
    let rhost = remote_host
        .map(|h| CString::new(h).map_err(|_| nul("remote host")))
        .transpose()?;
    let conv = PamConv {
        conv: converse,
        appdata_ptr: &*answers as *const Answers as *mut c_void,
    };
    let mut handle: *mut c_void = std::ptr::null_mut();
    // SAFETY: every pointer passed lives until pam_end below; the handle is
    // used only between a successful pam_start and pam_end.
    let status = unsafe {
        let started = (lib.start)(
            c_service.as_ptr(),
            answers.user.as_ptr(),
            &conv,
            &mut handle,
        );
        if started != PAM_SUCCESS || handle.is_null() {
            return Err(fail(format!("pam_start failed ({started})")));
        }
        if let Some(h) = &rhost {
            let set = (lib.set_item)(handle, PAM_RHOST, h.as_ptr().cast());
            if set != PAM_SUCCESS {
                (lib.end)(handle, set);
                return Err(fail(format!("pam_set_item(PAM_RHOST) failed ({set})")));
            }
        }
        let mut status = match password {
            Some(_) => (lib.authenticate)(handle, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK),
            None => PAM_SUCCESS,
        };
        if status == PAM_SUCCESS {
            status = (lib.acct_mgmt)(handle, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
        }
        let text = (lib.strerror)(handle, status);
        let message = if text.is_null() {
            format!("error {status}")
        } else {
            CStr::from_ptr(text).to_string_lossy().into_owned()
        };
        (lib.end)(handle, status);
        (status, message)
    };
    drop(answers);
    match status.0 {
        PAM_SUCCESS => Ok(true),
        PAM_AUTH_ERR
        | PAM_USER_UNKNOWN
        | PAM_PERM_DENIED
        | PAM_CRED_INSUFFICIENT
        | PAM_MAXTRIES
        | PAM_NEW_AUTHTOK_REQD
        | PAM_ACCT_EXPIRED => Ok(false),
        _ => Err(fail(status.1)),
    }
}
