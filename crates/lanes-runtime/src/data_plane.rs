//! The data plane's own thread. The gateway and every sidecar of `lanes up` serve on one
//! current-thread runtime, as one Envoy worker serves its listeners: a request's hops
//! through the gateway and the in-process sidecars never wake another thread. The API
//! server and the controllers keep the multi-threaded runtime, so neither side's load
//! stalls the other.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Connections a data plane listener queues before it accepts them (as
/// `tokio::net::TcpListener::bind` does).
const BACKLOG: i32 = 1024;

/// A thread running the data plane's runtime until dropped.
#[derive(Debug)]
pub struct DataPlaneThread {
    handle: Handle,
    exit: Option<oneshot::Sender<()>>,
}

impl DataPlaneThread {
    /// Starts the thread.
    pub fn start() -> io::Result<DataPlaneThread> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (exit, exited) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("lanes-data-plane".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = exited.await;
                });
            })?;
        Ok(DataPlaneThread {
            handle,
            exit: Some(exit),
        })
    }

    /// The runtime's handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Serves `listener` (from [`bind`]) on the data plane thread: it is registered
    /// there, so its connections are that runtime's.
    pub fn serve<F, Fut>(&self, listener: std::net::TcpListener, serve: F) -> JoinHandle<()>
    where
        F: FnOnce(TcpListener) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.handle.spawn(async move {
            let addr = listener.local_addr().ok();
            match TcpListener::from_std(listener) {
                Ok(listener) => serve(listener).await,
                Err(e) => tracing::error!(?addr, error = %e, "data plane cannot listen"),
            }
        })
    }
}

impl Drop for DataPlaneThread {
    fn drop(&mut self) {
        if let Some(exit) = self.exit.take() {
            let _ = exit.send(());
        }
    }
}

/// A listening, non-blocking socket for a data plane listener, made with no runtime:
/// connections queue from now on (an error is reported now), and the data plane thread
/// accepts them once it serves the listener.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listener_served_on_the_thread_answers_and_runs_there() {
        let plane = DataPlaneThread::start().unwrap();
        let socket = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        plane.serve(socket, move |listener| async move {
            let (_conn, _) = listener.accept().await.unwrap();
            let _ = tx.send(std::thread::current().name().map(str::to_string));
        });
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert_eq!(rx.await.unwrap().as_deref(), Some("lanes-data-plane"));
    }

    #[test]
    fn binding_a_taken_address_fails_at_once() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = bind(held.local_addr().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
