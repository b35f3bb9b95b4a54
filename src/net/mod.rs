//! Networking: the mio event loop that owns every socket. It hands requests to their
//! owners and takes frames back through the routing seam ([`crate::route`]).

mod accept;
mod conn;
mod event_loop;
mod gate;
mod limits;
mod outqueue;
mod refusals;
mod table;

pub use event_loop::{EventLoop, LoopHandle};
