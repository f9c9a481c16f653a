//! A watchdog per connection, for the slow client actix does not time out.
//!
//! actix-http times the first request's head (`--request-timeout`, 408) and an idle
//! kept-alive connection (`--keep-alive`), but once the first byte of a later request
//! arrives on a kept-alive connection nothing times the rest of that head: a client
//! that sends one request, then one byte of the next, would hold the connection (a
//! file descriptor and its buffers) forever. The watchdog closes a connection that
//! has had no request being handled and nothing left to send for `--keep-alive` +
//! `--request-timeout`: as long as any client may take between two answers' worth of
//! requests, so it never cuts one that actix itself would let through.

use std::any::Any;
use std::cell::Cell;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use prometheus::IntCounter;

/// What the watchdog knows of its connection: requests being handled, and since
/// when none has been and nothing was waiting to be sent.
struct Activity {
    busy: Cell<usize>,
    quiet_since: Cell<Instant>,
}

/// Put in each watched connection's data ([`actix_web::HttpRequest::conn_data`]).
#[derive(Clone)]
pub struct Watched(Rc<Activity>);

impl Watched {
    /// Marks a request as being handled until the guard is dropped.
    pub fn busy(&self) -> Busy {
        self.0.busy.set(self.0.busy.get() + 1);
        Busy(self.0.clone())
    }
}

/// See [`Watched::busy`].
pub struct Busy(Rc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.set(self.0.busy.get().saturating_sub(1));
        self.0.quiet_since.set(Instant::now());
    }
}

/// The `HttpServer::on_connect` callback: watches every TCP connection, closing it
/// after `limit` without a request (counted in `closed`).
pub fn watchdog(limit: Duration, closed: IntCounter) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync + 'static {
    move |io, data| {
        let Some(tcp) = io.downcast_ref::<TcpStream>() else { return };
        let fd = tcp.as_raw_fd();
        let Some(inode) = inode(fd) else { return };
        let activity = Rc::new(Activity { busy: Cell::new(0), quiet_since: Cell::new(Instant::now()) });
        data.insert(Watched(activity.clone()));
        // Called on the worker's thread, where the connection is served.
        actix_web::rt::spawn(watch(Rc::downgrade(&activity), fd, inode, limit, closed.clone()));
    }
}

async fn watch(activity: Weak<Activity>, fd: RawFd, inode: libc::ino_t, limit: Duration, closed: IntCounter) {
    let tick = (limit / 4).max(Duration::from_millis(50));
    loop {
        actix_web::rt::time::sleep(tick).await;
        // Gone once the connection has ended; and a descriptor number can be reused
        // by a later connection, whose socket has another inode.
        let Some(activity) = activity.upgrade() else { return };
        if self::inode(fd) != Some(inode) {
            return;
        }
        if activity.busy.get() > 0 || unsent(fd) > 0 {
            activity.quiet_since.set(Instant::now());
            continue;
        }
        if activity.quiet_since.get().elapsed() >= limit {
            tracing::debug!("closing a connection that sent no complete request in {limit:?}");
            closed.inc();
            // SAFETY: `fd` is this connection's socket (same inode, checked just now on
            // the thread that owns it); shutting it down makes actix end the connection.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            return;
        }
    }
}

/// The inode of the socket open as `fd`, if any.
fn inode(fd: RawFd) -> Option<libc::ino_t> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat only writes the struct it is given.
    (unsafe { libc::fstat(fd, st.as_mut_ptr()) } == 0).then(|| unsafe { st.assume_init() }.st_ino)
}

/// Bytes written to the socket and not yet acknowledged by the client: an answer
/// still on its way to a slow reader is not a stall.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn unsent(fd: RawFd) -> libc::c_int {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one int.
    match unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) } {
        0 => n,
        _ => 0,
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn unsent(_fd: RawFd) -> libc::c_int {
    0
}
