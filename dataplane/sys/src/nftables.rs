//! nftables without a process: libnftables, the library `nft` itself is built on (installed
//! with it), loaded at run time, and one context kept for the process's life. The agent loads
//! its tables through it.
//!
//! Running `nft -f` costs a process, the ten shared libraries it loads and a fresh context:
//! 15-35 ms a change on a busy host, most of a container's connect (docs/performance.md, "The
//! control plane at 100 hosts"). A kept context does the same transaction in well under a
//! millisecond. It caches the kernel's ruleset and refreshes that cache whenever the ruleset's
//! generation moved, as `nft -i` does, so what others change is seen.
//!
//! A context speaks to the network namespace of the thread that made it, so it is used only
//! from threads in that namespace: [`Libnft::run`] answers `None` anywhere else, as
//! [`Libnft::get`] does where the library cannot be loaded, and the caller runs the `nft`
//! program instead. Both calls block: run them on a blocking thread.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::os::unix::fs::MetadataExt;
use std::ptr::NonNull;
use std::sync::{Mutex, OnceLock};

use libloading::Library;

/// The library's name and ABI version (Debian's `libnftables1`, a dependency of `nftables`).
pub const SONAME: &str = "libnftables.so.1";

/// `NFT_CTX_DEFAULT`: a context for the default (non-dry-run) use.
const NFT_CTX_DEFAULT: u32 = 0;

type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
type CtxCall = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// The functions of the library ovnet calls, with the signatures of `nftables/libnftables.h`.
#[derive(Debug)]
struct Api {
    run_cmd_from_buffer: RunCmd,
    get_output_buffer: CtxBuffer,
    get_error_buffer: CtxBuffer,
}

/// The context and the library its functions come from (kept loaded while they are used).
#[derive(Debug)]
struct Context {
    ctx: NonNull<c_void>,
    api: Api,
    _lib: Library,
}

// SAFETY: a libnftables context has no tie to the thread that made it (only to its network
// namespace, checked before every use); `Libnft` hands it to one thread at a time (a mutex).
unsafe impl Send for Context {}

/// The process's libnftables context.
#[derive(Debug)]
pub struct Libnft {
    ctx: Mutex<Context>,
    /// The network namespace the context speaks to: device and inode of its nsfs file.
    netns: (u64, u64),
}

/// The calling thread's network namespace, as (device, inode) of its nsfs file.
fn thread_netns() -> Option<(u64, u64)> {
    std::fs::metadata("/proc/thread-self/ns/net")
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl Libnft {
    /// The context, loaded and made on the first call (~12 ms), in the calling thread's
    /// namespace; `None` if the library could not be loaded (said once, in the log).
    pub fn get() -> Option<&'static Libnft> {
        static LIB: OnceLock<Option<Libnft>> = OnceLock::new();
        LIB.get_or_init(|| match Libnft::load() {
            Ok(l) => Some(l),
            Err(e) => {
                log::info!("nftables: {e}; running the nft program for every change instead");
                None
            }
        })
        .as_ref()
    }

    fn load() -> Result<Libnft, String> {
        let netns = thread_netns().ok_or("/proc/thread-self/ns/net cannot be read")?;
        // SAFETY: loading runs the library's initialisers: nftables' own, which only set up
        // its tables.
        let lib = unsafe { Library::new(SONAME) }.map_err(|e| format!("{SONAME}: {e}"))?;
        // SAFETY: every symbol is looked up with its type as libnftables.h declares it; the
        // SONAME pins that ABI. The pointers are kept beside `lib`, which stays loaded.
        let (ctx_new, buffer_output, buffer_error, api) = unsafe {
            (
                symbol::<CtxNew>(&lib, b"nft_ctx_new\0")?,
                symbol::<CtxCall>(&lib, b"nft_ctx_buffer_output\0")?,
                symbol::<CtxCall>(&lib, b"nft_ctx_buffer_error\0")?,
                Api {
                    run_cmd_from_buffer: symbol::<RunCmd>(&lib, b"nft_run_cmd_from_buffer\0")?,
                    get_output_buffer: symbol::<CtxBuffer>(&lib, b"nft_ctx_get_output_buffer\0")?,
                    get_error_buffer: symbol::<CtxBuffer>(&lib, b"nft_ctx_get_error_buffer\0")?,
                },
            )
        };
        // SAFETY: `nft_ctx_new` takes flags and returns a new context or NULL.
        let ctx = NonNull::new(unsafe { ctx_new(NFT_CTX_DEFAULT) })
            .ok_or("nft_ctx_new failed (out of memory?)")?;
        // SAFETY: `ctx` is a live context; output and errors then go to its buffers, read
        // (and emptied) after every command instead of going to stdout and stderr.
        let buffered =
            unsafe { buffer_output(ctx.as_ptr()) == 0 && buffer_error(ctx.as_ptr()) == 0 };
        if !buffered {
            return Err("libnftables could not buffer its output".into());
        }
        Ok(Libnft {
            ctx: Mutex::new(Context {
                ctx,
                api,
                _lib: lib,
            }),
            netns,
        })
    }

    /// Runs `commands` (`nft -f` text) in one transaction: `Ok` with what it printed, or
    /// `Err` with what it said; `None` if the calling thread is not in the context's
    /// namespace.
    pub fn run(&self, commands: &str) -> Option<Result<String, String>> {
        if thread_netns() != Some(self.netns) {
            return None;
        }
        let Ok(text) = CString::new(commands) else {
            return Some(Err("the ruleset holds a NUL byte".into()));
        };
        // A thread that panicked holding the lock left the context as any call leaves it.
        let c = self
            .ctx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let ctx = c.ctx.as_ptr();
        // SAFETY: `ctx` is live and this thread holds it alone; `text` is a C string that
        // outlives the call. The buffers' pointers are valid until the context's next call
        // and are copied at once (reading them also empties them for the next command).
        let (rc, out, err) = unsafe {
            let rc = (c.api.run_cmd_from_buffer)(ctx, text.as_ptr());
            let out = owned((c.api.get_output_buffer)(ctx));
            let err = owned((c.api.get_error_buffer)(ctx));
            (rc, out, err)
        };
        Some(if rc == 0 {
            Ok(out)
        } else if err.trim().is_empty() {
            Err(format!("libnftables failed ({rc}) and said nothing"))
        } else {
            Err(err.trim().to_owned())
        })
    }
}

/// The function `name` (NUL-terminated) of `lib`.
///
/// # Safety
/// `T` is the function's type as the library declares it.
unsafe fn symbol<T: Copy>(lib: &Library, name: &[u8]) -> Result<T, String> {
    // SAFETY: as the caller promises.
    unsafe { lib.get::<T>(name) }
        .map(|s| *s)
        .map_err(|e| format!("{SONAME}: {e}"))
}

/// A copy of a buffer the library returned (NULL: empty).
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the call.
unsafe fn owned(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: as the caller promises.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread of a new network namespace (unshared, gone with the thread): the
    /// library's context is the process's, so these tests make their own namespace and never
    /// touch the machine's rules.
    fn in_new_netns<R: Send>(f: impl FnOnce() -> R + Send) -> Option<R> {
        std::thread::scope(|s| {
            s.spawn(|| {
                crate::netns::unshare().ok()?;
                Some(f())
            })
            .join()
            .expect("the test thread")
        })
    }

    #[test]
    fn one_context_runs_transactions_and_reports_refusals() {
        let Some(ran) = in_new_netns(|| {
            // Each test binary is one process: the context is made here, in this namespace.
            let l = Libnft::get()?;
            let made = l.run("table ip ovt_lib {}\nadd chain ip ovt_lib c\n");
            let listed = l.run("list table ip ovt_lib\n");
            let refused = l.run("add rule ip ovt_lib nochain accept\n");
            let after = l.run("list tables\n");
            Some((made, listed, refused, after))
        }) else {
            return ovnet_testbed::skip("no CAP_SYS_ADMIN to unshare a network namespace");
        };
        let Some((made, listed, refused, after)) = ran else {
            return ovnet_testbed::skip(format!(
                "{SONAME} is not installed (deploy/deps.sh installs nftables)"
            ));
        };
        if made.is_none() {
            return ovnet_testbed::skip("another test of this process made the context elsewhere");
        }
        assert_eq!(made, Some(Ok(String::new())));
        let listed = listed.unwrap().unwrap();
        assert!(listed.contains("table ip ovt_lib") && listed.contains("chain c"));
        let refused = refused.unwrap().unwrap_err();
        assert!(refused.contains("No such file or directory"), "{refused}");
        // The error buffer was emptied: the next command's answer is its own.
        assert_eq!(after, Some(Ok("table ip ovt_lib\n".to_owned())));
        // From a thread in another namespace (this one, the test's), the context is not used.
        if let Some(l) = Libnft::get() {
            assert_eq!(l.run("list tables\n"), None);
        }
    }
}
