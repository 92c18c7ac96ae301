//! The runtime's side of streaming: pipes and pty masters handed over by the shim, wrapped
//! as tokio streams.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::shim::protocol::{Conn, Response};

/// An async reader/writer over a pipe end or a pty master.
pub(crate) struct FdStream {
    inner: AsyncFd<OwnedFd>,
}

impl FdStream {
    /// Takes ownership of `fd` and makes it non-blocking.
    pub fn new(fd: OwnedFd) -> io::Result<FdStream> {
        // SAFETY: fcntl on an fd we own.
        unsafe {
            let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        // SAFETY: the fd is owned by the AsyncFd and stays open as long as it is registered.
        let inner = unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)?;
        Ok(FdStream { inner })
    }
}

fn cvt(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl AsyncRead for FdStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.inner.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            // SAFETY: read into the unfilled part of the buffer.
            let res = guard.try_io(|fd| {
                cvt(unsafe {
                    libc::read(
                        fd.as_raw_fd(),
                        unfilled.as_mut_ptr() as *mut libc::c_void,
                        unfilled.len(),
                    )
                })
            });
            match res {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // A pty master reads EIO once the terminal's last user is gone: that is EOF.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for FdStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.inner.poll_write_ready(cx))?;
            // SAFETY: write from a valid slice.
            let res = guard.try_io(|fd| {
                cvt(unsafe {
                    libc::write(
                        fd.as_raw_fd(),
                        data.as_ptr() as *const libc::c_void,
                        data.len(),
                    )
                })
            });
            match res {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Sets a terminal's size (TIOCSWINSZ on its master).
pub(crate) fn resize(fd: &OwnedFd, width: u16, height: u16) {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: ioctl with a valid winsize.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// Waits for the shim's closing line on an exec or wait connection (the exit code) without
/// holding a thread. Dropping the future closes the connection, which the supervisor takes
/// as the client having gone: it ends an exec'd process whose stream nobody reads any more
/// (a blocking read on a pool thread would keep the socket open until the process ended by
/// itself, and the thread with it).
pub(crate) async fn recv_exit(conn: Conn) -> io::Result<Response> {
    let (stream, mut buf) = conn.into_parts();
    stream.set_read_timeout(None)?;
    stream.set_nonblocking(true)?;
    let mut stream = tokio::net::UnixStream::from_std(stream)?;
    loop {
        if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            return serde_json::from_slice(&buf[..nl])
                .map_err(|e| io::Error::other(format!("bad shim message: {e}")));
        }
        let mut more = [0u8; 1024];
        let n = stream.read(&mut more).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the shim connection was closed",
            ));
        }
        buf.extend_from_slice(&more[..n]);
    }
}
