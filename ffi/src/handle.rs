//! The one handle mechanism for every opaque C type (after rustls-ffi's
//! `Castable`): each C type names the one Rust type its handles hold, so in
//! Rust a `*const shardkit_lock` can only ever be read as a lock.
//!
//! C can still pass one kind of handle where another is expected (a cast, a
//! mixed-up variable). Every allocation therefore starts with its type's tag,
//! which is checked before the value is touched: the wrong kind of handle is
//! `SHARDKIT_STATUS_INVALID_ARGUMENT` naming both types, never a
//! misinterpreted object. `_free` clears the tag before releasing the
//! memory. (A dangling or foreign pointer is still the caller's bug: it is
//! read, and ASan reports it.)

use crate::args::null;
use crate::lease::{
    shardkit_cancel, shardkit_coordinator, shardkit_election, shardkit_fence_gate, shardkit_lock,
    shardkit_observer, shardkit_scoped_lock, shardkit_session, shardkit_shard_owner,
};
use crate::pipeline::{shardkit_pipeline, shardkit_reply};
use crate::proxy::shardkit_proxy;
use crate::scatter::shardkit_http_scatter;
use crate::sharder::shardkit_sharder;
use shardkit::{Error, Result};

/// Ties an opaque C type to the Rust type its handles hold. Implemented
/// only through [`handles!`], which gives every type its own tag.
pub(crate) trait Handle {
    /// What a handle of this C type points at.
    type Rust;
    /// The C type's name, for messages.
    const NAME: &'static str;
    /// The first word of every live allocation of this type.
    const TAG: u64;
}

/// What a handle points to: the tag, then the value. `repr(C)` so the tag
/// is at offset 0 whatever `T` is, and any handle's tag can be read
/// without knowing its type.
#[repr(C)]
struct Tagged<T> {
    tag: u64,
    value: T,
}

/// The tag of a freed allocation: never a live type's.
const FREED: u64 = 0;

/// Tags are "SHARDK" then a 16-bit type number: unlikely as the first word
/// of anything else.
const TAG_BASE: u64 = u64::from_be_bytes(*b"SHARDK\0\0");

macro_rules! handles {
    ($($n:literal: $c:ident => $rust:ty,)+) => {
        $(
            impl Handle for $c {
                type Rust = $rust;
                const NAME: &'static str = stringify!($c);
                const TAG: u64 = TAG_BASE + $n;
            }
        )+

        /// The C type a tag belongs to, for the wrong-handle message.
        fn type_of(tag: u64) -> Option<&'static str> {
            $(
                if tag == <$c as Handle>::TAG {
                    return Some(<$c as Handle>::NAME);
                }
            )+
            None
        }

        #[cfg(test)]
        pub(crate) const ALL_TAGS: &[u64] = &[$(<$c as Handle>::TAG),+];
    };
}

// The one table of C handle types. Numbers are never reused.
handles! {
    1: shardkit_sharder => shardkit::Sharder,
    2: shardkit_cancel => shardkit::lease::Cancel,
    3: shardkit_coordinator => shardkit::lease::Coordinator,
    4: shardkit_session => crate::lease::session::SessionHandle,
    5: shardkit_lock => shardkit::lease::Lock,
    6: shardkit_election => shardkit::lease::Election,
    7: shardkit_observer => crate::lease::observer::ObserverHandle,
    8: shardkit_fence_gate => shardkit::lease::FenceGate,
    9: shardkit_shard_owner => crate::lease::shard_owner::ShardOwnerHandle,
    10: shardkit_http_scatter => crate::scatter::HttpScatter,
    11: shardkit_scoped_lock => shardkit::lease::ScopedLock,
    12: shardkit_proxy => shardkit::proxy::Proxy,
    13: shardkit_pipeline => crate::pipeline::PipelineHandle,
    14: shardkit_reply => crate::pipeline::Reply,
}

/// Hands `value` to C as a new handle of type `C`.
pub(crate) fn into_handle<C: Handle>(value: C::Rust) -> *mut C {
    Box::into_raw(Box::new(Tagged { tag: C::TAG, value })).cast()
}

/// Reads the tag of a non-NULL handle and checks it is `C`'s.
///
/// # Safety
/// `ptr` is non-NULL and points to a live handle of some shardkit type.
#[inline(always)]
unsafe fn check<C: Handle>(ptr: *const C, what: &str) -> Result<*mut Tagged<C::Rust>> {
    let tagged = ptr.cast::<Tagged<C::Rust>>().cast_mut();
    if !tagged.is_aligned() {
        return Err(Error::invalid(format!(
            "{what} ({:#x}) is not a {} handle: it is misaligned",
            ptr as usize,
            C::NAME
        )));
    }
    // SAFETY: every handle starts with its u64 tag (repr(C)), and `ptr`
    // points to a live handle of some type, per the caller.
    let tag = unsafe { ptr.cast::<u64>().read() };
    if tag != C::TAG {
        return Err(wrong_type::<C>(what, tag));
    }
    Ok(tagged)
}

#[cold]
fn wrong_type<C: Handle>(what: &str, tag: u64) -> Error {
    let found = match type_of(tag) {
        Some(name) => format!("a {name}"),
        None if tag == FREED => "a freed handle".to_string(),
        None => "not a shardkit handle".to_string(),
    };
    Error::invalid(format!("{what} is not a {} handle: it is {found}", C::NAME))
}

/// Borrows the value behind a handle: `NULL_POINTER` for NULL,
/// `INVALID_ARGUMENT` for a handle of another type.
///
/// # Safety
/// `ptr` is NULL or a live handle of some shardkit type, valid for `'a`.
#[inline(always)]
pub(crate) unsafe fn borrow<'a, C: Handle>(ptr: *const C, what: &str) -> Result<&'a C::Rust> {
    if ptr.is_null() {
        return Err(null(what));
    }
    // SAFETY: per the caller.
    let tagged = unsafe { check(ptr, what)? };
    // SAFETY: the tag says this is a live `Tagged<C::Rust>` from
    // `into_handle`, valid until its `_free`, per the caller.
    Ok(unsafe { &(*tagged).value })
}

/// Takes a handle back for `_free`: `None` for NULL, and for a handle of
/// another type, which is left alone (its own `_free` releases it) with the
/// reason recorded for `shardkit_last_error`.
///
/// # Safety
/// `ptr` is NULL or a live handle of some shardkit type, not used again
/// once this returns `Some`.
pub(crate) unsafe fn take<C: Handle>(ptr: *mut C, what: &str) -> Option<C::Rust> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: per the caller.
    match unsafe { check(ptr, what) } {
        Ok(tagged) => {
            // SAFETY: a live `Tagged<C::Rust>` from `into_handle` (the tag
            // says so) whose ownership the caller gives up. The tag is
            // cleared first, so a stale copy of the pointer reads as freed
            // for as long as the allocator leaves the memory alone.
            unsafe {
                (*tagged).tag = FREED;
                Some(Box::from_raw(tagged).value)
            }
        }
        Err(e) => {
            crate::boundary::fail(e);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_distinct_and_never_the_freed_tag() {
        let mut tags = ALL_TAGS.to_vec();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), ALL_TAGS.len());
        assert!(!tags.contains(&FREED));
    }
}
