//! Positioned reads and writes (`pread`/`pwrite`: no stream, no shared cursor). Inside a
//! guest they are wasi-libc's calls on the descriptor, which wasmtime runs on the calling
//! thread; std's stream path (`Read`/`Write` on a WASI file) costs a round trip to the host's
//! blocking pool per call and reports `EIO` for `ENOSPC`.

use std::fs::File;
use std::io;

/// Reads exactly `len` bytes at `off`.
pub(crate) fn read_at(file: &File, off: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    if read_full_at(file, &mut buf, off)? < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf)
}

/// Fills `buf` from byte `off` of `file` (positioned: no shared cursor); fewer bytes only at
/// the end of the file. Inside a guest this is wasi-libc's `pread` (`descriptor.read`), which
/// wasmtime runs on the calling thread; `Read::read` on a WASI file goes through an input
/// stream, a round trip to the host's blocking pool per read.
pub(crate) fn read_full_at(file: &File, buf: &mut [u8], off: u64) -> io::Result<usize> {
    let mut done = 0usize;
    while done < buf.len() {
        let at = off + done as u64;
        let rest = &mut buf[done..];
        #[cfg(unix)]
        let n = std::os::unix::fs::FileExt::read_at(file, rest, at);
        #[cfg(target_os = "wasi")]
        let n = wasi_pread(file, rest, at);
        #[cfg(not(any(unix, target_os = "wasi")))]
        let n = {
            use std::io::{Seek, SeekFrom};
            let mut f = file;
            f.seek(SeekFrom::Start(at)).and_then(|_| f.read(rest))
        };
        match n {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(target_os = "wasi")]
fn wasi_pread(file: &File, buf: &mut [u8], off: u64) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    unsafe extern "C" {
        fn pread(fd: i32, buf: *mut u8, len: usize, off: i64) -> isize;
    }
    let at = i64::try_from(off).map_err(|_| io::Error::other("offset too large"))?;
    // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes; the descriptor is open
    // for the lifetime of `file`.
    let n = unsafe { pread(file.as_raw_fd(), buf.as_mut_ptr(), buf.len(), at) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Writes all of `buf` at byte `off` of `f` (positioned: no stream, no shared cursor).
pub(crate) fn write_all_at(f: &File, buf: &[u8], off: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        f.write_all_at(buf, off)
    }
    #[cfg(target_os = "wasi")]
    {
        // std's `FileExt::write_at` is unstable on WASI; wasi-libc's `pwrite` is the same
        // call (`descriptor.write(buf, offset)`), which wasmtime runs on the calling thread,
        // unlike the output-stream path of `Write::write` (a blocking-pool round trip).
        use std::os::fd::AsRawFd;
        unsafe extern "C" {
            fn pwrite(fd: i32, buf: *const u8, len: usize, off: i64) -> isize;
        }
        let (mut done, fd) = (0usize, f.as_raw_fd());
        while done < buf.len() {
            let at = i64::try_from(off + done as u64)
                .map_err(|_| io::Error::other("offset too large"))?;
            let rest = &buf[done..];
            // SAFETY: `rest` is a live slice of `rest.len()` bytes; `fd` is open for the
            // lifetime of `f`.
            let n = unsafe { pwrite(fd, rest.as_ptr(), rest.len(), at) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            done += n as usize;
        }
        Ok(())
    }
    #[cfg(not(any(unix, target_os = "wasi")))]
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = f;
        f.seek(SeekFrom::Start(off))?;
        f.write_all(buf)
    }
}
