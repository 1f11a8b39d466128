//! Filling a fresh policy map with `BPF_MAP_UPDATE_BATCH`: one system call for all of
//! a trie's entries instead of one per entry. At 100 000 prefixes the per-entry calls
//! cost about 200 ms of a policy swap and the batch about 130 ms (`cargo xtask bench`,
//! P4). Kernels without batch updates for the map type get the entries one by one.

use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd};

use aya::{Pod, maps::lpm_trie::Key};

/// The `BPF_MAP_*_BATCH` member of `union bpf_attr` (`include/uapi/linux/bpf.h`).
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
/// The kernel's internal "not supported" (`ENOTSUPP`), which reaches user space.
const ENOTSUPP: i32 = 524;

/// Inserts every `(key, value)` of `entries` into the LPM trie `map`.
pub(crate) fn insert_lpm<K: Pod, V: Pod>(map: BorrowedFd<'_>, entries: &[(Key<K>, V)]) -> io::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let keys: Vec<Key<K>> = entries.iter().map(|(k, _)| *k).collect();
    let values: Vec<V> = entries.iter().map(|(_, v)| *v).collect();
    match update_batch_counted(map, &keys, &values) {
        Ok(()) => Ok(()),
        Err((0, e)) if unsupported(&e) => {
            tracing::debug!("no batch updates for LPM tries on this kernel ({e}); inserting one by one");
            insert_one_by_one(map, &keys, &values)
        }
        Err((done, e)) => {
            Err(io::Error::new(e.kind(), format!("batch update failed after {done} entries: {e}")))
        }
    }
}

/// The way without batch updates.
fn insert_one_by_one<K: Pod, V: Pod>(map: BorrowedFd<'_>, keys: &[K], values: &[V]) -> io::Result<()> {
    for (key, value) in keys.iter().zip(values) {
        update_one(map, key, value)?;
    }
    Ok(())
}

fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP))
}

/// One `BPF_MAP_UPDATE_BATCH` of `keys` and `values` into `map`, whose key and value
/// types `K` and `V` must be (an error where the kernel has no batch updates for the
/// map's type). For callers that fill maps of their own, such as the benchmark's
/// reference programs.
pub fn update_batch<K: Pod, V: Pod>(map: BorrowedFd<'_>, keys: &[K], values: &[V]) -> io::Result<()> {
    if keys.len() != values.len() {
        return Err(io::Error::other("as many keys as values are needed"));
    }
    update_batch_counted(map, keys, values).map_err(|(_, e)| e)
}

/// One `BPF_MAP_UPDATE_BATCH`; on failure, how many entries the kernel took.
fn update_batch_counted<K: Pod, V: Pod>(
    map: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> Result<(), (u32, io::Error)> {
    let count = u32::try_from(keys.len()).map_err(|_| (0, io::Error::other("too many entries")))?;
    let mut attr = BatchAttr {
        in_batch: 0,
        out_batch: 0,
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count,
        map_fd: map.as_raw_fd() as u32,
        elem_flags: 0,
        flags: 0,
    };
    // SAFETY: `attr` points at `keys` and `values`, which outlive the call and hold
    // `count` keys and values of the map's key and value sizes (`K` and `V` are the
    // map's types: the caller's map was created from the same `#[repr(C)]` types).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_BATCH,
            &raw mut attr,
            size_of::<BatchAttr>() as libc::c_long,
        )
    };
    if rc < 0 { Err((attr.count, io::Error::last_os_error())) } else { Ok(()) }
}

/// One `BPF_MAP_UPDATE_ELEM` through a shared handle: aya's typed maps want `&mut`
/// for writes, but a write to a kernel map does not need exclusive access to its fd.
pub(crate) fn update_one<K: Pod, V: Pod>(map: BorrowedFd<'_>, key: &K, value: &V) -> io::Result<()> {
    /// The `BPF_MAP_*_ELEM` member of `union bpf_attr`.
    #[repr(C)]
    struct ElemAttr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
    let attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: (&raw const *key) as u64,
        value: (&raw const *value) as u64,
        flags: 0,
    };
    // SAFETY: `attr` points at one key and one value of the map's sizes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_ELEM,
            &raw const attr,
            size_of::<ElemAttr>() as libc::c_long,
        )
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd as _, FromRawFd as _, OwnedFd};

    use super::*;

    /// A fresh IPv4 LPM trie with `u32` values (`BPF_MAP_CREATE`).
    fn trie() -> OwnedFd {
        #[repr(C)]
        struct CreateAttr {
            map_type: u32,
            key_size: u32,
            value_size: u32,
            max_entries: u32,
            map_flags: u32,
        }
        const BPF_MAP_CREATE: libc::c_long = 0;
        const BPF_MAP_TYPE_LPM_TRIE: u32 = 11;
        const BPF_F_NO_PREALLOC: u32 = 1;
        let attr = CreateAttr {
            map_type: BPF_MAP_TYPE_LPM_TRIE,
            key_size: 8,
            value_size: 4,
            max_entries: 4096,
            map_flags: BPF_F_NO_PREALLOC,
        };
        // SAFETY: a valid BPF_MAP_CREATE attribute; the returned fd is ours.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_CREATE,
                &raw const attr,
                size_of::<CreateAttr>() as libc::c_long,
            )
        };
        assert!(fd >= 0, "BPF_MAP_CREATE: {}", io::Error::last_os_error());
        // SAFETY: a new descriptor nothing else owns.
        unsafe { OwnedFd::from_raw_fd(fd as i32) }
    }

    /// `BPF_MAP_LOOKUP_ELEM` of a /32 key: the longest match's value.
    fn lookup(map: BorrowedFd<'_>, addr: [u8; 4]) -> Option<u32> {
        #[repr(C)]
        struct ElemAttr {
            map_fd: u32,
            _pad: u32,
            key: u64,
            value: u64,
            flags: u64,
        }
        let key = Key::new(32, addr);
        let mut value = 0u32;
        let attr = ElemAttr {
            map_fd: map.as_raw_fd() as u32,
            _pad: 0,
            key: (&raw const key) as u64,
            value: (&raw mut value) as u64,
            flags: 0,
        };
        // SAFETY: points at one key and one value of the map's sizes.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                1 as libc::c_long,
                &raw const attr,
                size_of::<ElemAttr>() as libc::c_long,
            )
        };
        (rc == 0).then_some(value)
    }

    #[test]
    fn a_batch_fills_a_trie_exactly_as_single_inserts_do() {
        let entries: Vec<(Key<[u8; 4]>, u32)> = (0..2000u32)
            .map(|i| {
                let len = 8 + (i % 25);
                let addr = (i.wrapping_mul(2_654_435_761)) & (u32::MAX << (32 - len));
                (Key::new(len, addr.to_be_bytes()), i)
            })
            .collect();
        let (batched, single) = (trie(), trie());
        insert_lpm(batched.as_fd(), &entries).unwrap();
        let keys: Vec<_> = entries.iter().map(|(k, _)| *k).collect();
        let values: Vec<_> = entries.iter().map(|(_, v)| *v).collect();
        insert_one_by_one(single.as_fd(), &keys, &values).unwrap();
        let mut hits = 0;
        for probe in 0..20_000u32 {
            let addr = probe.wrapping_mul(2_246_822_519).to_be_bytes();
            let want = lookup(single.as_fd(), addr);
            assert_eq!(lookup(batched.as_fd(), addr), want, "{addr:?}");
            hits += usize::from(want.is_some());
        }
        assert!(hits > 100, "the probes should hit some prefixes ({hits})");
    }
}
