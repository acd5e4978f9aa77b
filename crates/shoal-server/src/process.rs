//! Facts about this process and machine, read from the OS (for `INFO` and metrics).

/// Resident set size in bytes (0 if unknown).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * page_size()
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u64 } else { 4096 }
}

/// What the C allocator (glibc's malloc) holds, from `mallinfo2`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes malloc has handed out and not had back: `uordblks + hblkhd` (chunks in use in
    /// its arenas, and chunks mapped on their own).
    pub allocated: u64,
    /// Bytes malloc holds free in its arenas (`fordblks`), for reuse. Trimming (see
    /// [`trim_heap`]) gives their whole pages back to the system without taking them out of
    /// this count, so not all of it is resident.
    pub free: u64,
}

/// The C allocator's numbers (`None` where the allocator is not glibc's). Walks malloc's free
/// lists under its lock: for `INFO`, not for every request.
pub fn heap_stats() -> Option<HeapStats> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 has no preconditions (glibc 2.33 or later).
        let info = unsafe { libc::mallinfo2() };
        Some(HeapStats {
            allocated: (info.uordblks + info.hblkhd) as u64,
            free: info.fordblks as u64,
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Makes every thread allocate from one malloc arena (glibc's `M_ARENA_MAX` = 1). Call it
/// before starting threads. glibc otherwise gives threads arenas of their own, and a block
/// goes back to the arena it came from: a value written on one worker thread and evicted by a
/// write on another leaves free memory that only the first thread's allocations reuse, which
/// grew RSS to 1.4-1.9x `maxmemory` with values of 4 KiB and more. Allocations of up to 1 KiB
/// mostly come from malloc's per-thread caches and take no lock either way.
pub fn use_one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt has no preconditions; an unknown or refused setting is ignored.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Turns transparent huge pages off for this process (`prctl(PR_SET_THP_DISABLE)`) when the
/// kernel puts them everywhere (`/sys/kernel/mm/transparent_hugepage/enabled` is `always`), as
/// Redis does by default (`disable-thp yes`); returns whether it did. With huge pages, the
/// kernel's `khugepaged` folds the holes that [`trim_heap`] gave back into 2 MiB pages again
/// as soon as a few of their 4 KiB pages are in use, so freed memory returns to RSS: after
/// 100 KB values replaced small ones, RSS grew to 1.17-1.22x `maxmemory` instead of 1.10x.
pub fn disable_transparent_huge_pages() -> std::io::Result<bool> {
    let mode = match std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled") {
        Ok(mode) => mode,
        // No such file: a kernel without transparent huge pages.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if !mode.contains("[always]") {
        return Ok(false);
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments and touches no memory.
        let done = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if done != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(true)
}

/// Asks malloc to give the free memory it holds back to the system (glibc's `malloc_trim`),
/// whole pages inside free chunks included. Takes malloc's lock for tens to hundreds of
/// microseconds (measured with one arena: 16-76 us typical, 0.6 ms at most); the node calls
/// it once a second, and sooner after the store has freed a megabyte or more.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Physical memory of the machine in bytes (0 if unknown).
pub fn total_system_memory() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    if pages > 0 {
        pages as u64 * page_size()
    } else {
        0
    }
}

/// CPU time this process has used: (user, system) seconds.
pub fn cpu_seconds() -> (f64, f64) {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return (0.0, 0.0);
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (seconds(usage.ru_utime), seconds(usage.ru_stime))
}

/// The path of the running program (empty if unknown).
pub fn executable() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Now, in microseconds since the Unix epoch.
pub fn unix_time_us() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

/// `uname -srm`, as Redis shows in `INFO` (`os:Linux 6.1.0 x86_64`).
pub fn os_description() -> String {
    // SAFETY: an all-zero utsname is a valid value for uname to overwrite.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is a valid, writable utsname.
    if unsafe { libc::uname(&mut name) } != 0 {
        return std::env::consts::OS.to_string();
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!(
        "{} {} {}",
        field(&name.sysname),
        field(&name.release),
        field(&name.machine)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_real_numbers() {
        assert!(super::rss_bytes() > 0);
        assert!(super::total_system_memory() > 0);
        assert!(super::os_description().starts_with("Linux"));
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn reads_and_trims_the_heap() {
        let block = vec![1u8; 1 << 20];
        let heap = super::heap_stats().unwrap();
        assert!(heap.allocated >= block.len() as u64);
        drop(block);
        super::trim_heap();
    }
}

/// File descriptors a node keeps for itself beyond its clients: listeners, bus and
/// replication links, the Raft log, logs (Redis reserves 32; a cluster node needs more).
pub const RESERVED_FDS: u64 = 128;

/// What [`fit_open_files`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenFiles {
    /// The limit was already high enough, or was raised to `limit`.
    Enough {
        /// The soft limit now.
        limit: u64,
    },
    /// The limit could only be raised to `limit`: `maxclients` must come down to
    /// `maxclients` so that RESP clients, HTTP clients and the node's own files fit.
    Reduced {
        /// The soft limit now.
        limit: u64,
        /// The `maxclients` that fits.
        maxclients: u64,
    },
    /// Not even the node's own files and HTTP clients fit under the hard limit `limit`.
    TooFew {
        /// The hard limit.
        limit: u64,
    },
}

/// Makes room for `maxclients` RESP clients and `http_clients` HTTP clients under the
/// process's open-files limit (`ulimit -n`), as Redis's `adjustOpenFilesLimit` does: raises
/// the soft limit up to the hard one if it is too low, and says how far `maxclients` must come
/// down when even that is not enough. Without this, clients past the limit make `accept` fail
/// for every listener at once.
pub fn fit_open_files(maxclients: u64, http_clients: u64) -> OpenFiles {
    let wanted = maxclients
        .saturating_add(http_clients)
        .saturating_add(RESERVED_FDS);
    let mut limits = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limits) } != 0 {
        return OpenFiles::Enough { limit: wanted };
    }
    let soft = limits.rlim_cur;
    if soft == libc::RLIM_INFINITY || soft >= wanted {
        return OpenFiles::Enough { limit: soft };
    }
    let best = if limits.rlim_max == libc::RLIM_INFINITY {
        wanted
    } else {
        wanted.min(limits.rlim_max)
    };
    let raised = libc::rlimit {
        rlim_cur: best,
        rlim_max: limits.rlim_max,
    };
    // SAFETY: setrlimit reads the struct it is given.
    let limit = if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        best
    } else {
        soft
    };
    if limit >= wanted {
        return OpenFiles::Enough { limit };
    }
    match limit.checked_sub(http_clients + RESERVED_FDS) {
        Some(fit) if fit >= 1 => OpenFiles::Reduced {
            limit,
            maxclients: fit,
        },
        _ => OpenFiles::TooFew { limit },
    }
}
