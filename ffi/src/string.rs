//! Strings the library allocates and hands to C through `char **`: made
//! here, freed by `shardkit_string_free`, and nowhere else.

use shardkit::{Error, Result};
use std::ffi::{c_char, CString};

/// Hands `text` to C as a NUL-terminated string it frees with
/// `shardkit_string_free`. Text holding a NUL byte is refused, naming
/// `what`.
pub(crate) fn string_out(text: String, what: &str) -> Result<*mut c_char> {
    CString::new(text)
        .map(CString::into_raw)
        .map_err(|e| Error::invalid(format!("{what} holds a NUL byte: {e}")))
}

/// Frees a string this library returned through a `char **` out-param
/// (`shardkit_http_scatter_gather`, `shardkit_http_scatter_first`); NULL is
/// a no-op. Never pass it other memory, or a string twice.
///
/// # Safety
/// `s` NULL or a string from this library not freed before.
#[no_mangle]
pub unsafe extern "C" fn shardkit_string_free(s: *mut c_char) {
    ffi_boundary!(or () => {
        if !s.is_null() {
            // SAFETY: strings handed out come from `CString::into_raw` in
            // `string_out`, per the caller's contract.
            drop(unsafe { CString::from_raw(s) });
        }
    })
}
