//! A cluster's `Redirect` (protocol.md "Cluster"): the node is not the user's home, so
//! the register or login goes again, the same request, on a new link to the home, whose
//! address the link keeps from then on (reconnects after a drop go there). A chain of
//! redirects is bounded, as the reference client bounds it (`confab_proto::client`).

use super::failures::request_name;
use super::App;
use crate::connection::{Origin, Pending};
use crate::render::{Event, Output};
use confab_proto::client::MAX_REDIRECTS;

impl<O: Output> App<O> {
    /// `pending` was answered with `Redirect { node, address }`: nothing was done.
    pub(super) fn redirected(&mut self, pending: Pending, node: u32, address: String) {
        if self.hops.is_empty() {
            self.hops.push(self.conn.addr().to_string());
        }
        // Compared as written: the same node under two spellings costs a hop or two more
        // before the bound ends it.
        let seen = self.hops.contains(&address);
        self.hops.push(address.clone());
        if seen || self.hops.len() > MAX_REDIRECTS + 1 {
            let trail = std::mem::take(&mut self.hops).join(" -> ");
            let what = request_name(&pending.request);
            self.out.emit(Event::error(
                "RedirectLoop",
                format!("{what} not carried out: the servers send it round in a loop ({trail})"),
            ));
            if pending.origin == Origin::Auto {
                // Logging in again after a drop went nowhere; the user has to log in.
                self.resume = None;
                self.forget_live_state();
                self.fail_unsent();
            }
            return;
        }
        self.out.emit(Event::Redirected { node, addr: address.clone() });
        // Sent once the new link is up (App::conn_event); until then commands wait, as
        // they wait for any link coming up. What waits to be sent again after a drop
        // (`unsent`) stays for the login there.
        self.follow = Some((pending.request, pending.origin));
        self.conn.connect(&address);
    }
}
