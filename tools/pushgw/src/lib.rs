//! `confab-pushgw`: the reference push gateway. It logs in to confabd as a service
//! (Hello, ServiceLogin), becomes the push gateway (SubscribePush), and POSTs each push
//! event to one webhook, up to `--concurrency` (8) at once; the webhook talks to APNs,
//! FCM or whatever the operator uses. Acks are cumulative (AckPush), so an event is
//! acknowledged to the server only once the webhook answered 2xx to it and to every
//! event received before it, and none is lost: a failed POST (another status, a timeout, a
//! connection error) is retried on its own with exponential backoff, never skipped; a lost
//! server connection is made again and the unacknowledged events come again. The webhook
//! therefore sees each event *at least* once and deduplicates by the `Idempotency-Key`
//! header (the event's `seq`). The webhook's 2xx answer may list tokens the push service
//! rejected as no longer valid; the gateway asks the server to forget them
//! (`DropPushToken`). While another gateway holds the feed this one stands by and tries
//! again. SIGTERM or SIGINT ends it (exit 0): the POSTs under way finish, no new one
//! starts, and it waits briefly for the server's receipt of the last ack.
//!
//! The path of an event, one module per arrow:
//!
//! ```text
//! confabd → link (handshake, reader thread) → feed::pump + acks (acks in order)
//!         → pool (N delivery threads) → deliver (retries, backoff) → webhook (HTTP) + payload (JSON)
//! webhook's answer → dead_tokens → feed::pump → writer (drops, then acks) → confabd
//! gateway: connect, subscribe, pump, reconnect or stand by, until stop
//! ```
//!
//! # Order
//!
//! With several POSTs in flight, and each failed one retried on its own, the webhook sees
//! events out of order: a later event may arrive before an earlier one, and while an
//! earlier one is retried the later ones keep going. Only the acks are in order. Most
//! webhooks need no order (each event wakes one user's devices), but one that sets a badge
//! from `unread` should not let an event with a lower `seq` for the same recipient
//! overwrite a higher one; `--concurrency 1` POSTs strictly in order, one at a time.
//!
//! # The webhook request
//!
//! `POST` to the `--webhook` URL with `Content-Type: application/json`,
//! `Idempotency-Key: SEQ` and this body (one line; spread out here):
//!
//! ```json
//! {"seq": 12,
//!  "recipient": "bob",
//!  "chat": {"type": "user", "name": "alice"},
//!  "chat_name": "Alice",
//!  "sender": "alice",
//!  "sender_name": "Alice",
//!  "sender_kind": "user",
//!  "message_id": 4711,
//!  "kind": "text",
//!  "count": 2,
//!  "unread": 5,
//!  "timestamp_ms": 1700000000000,
//!  "devices": [{"device": "phone", "platform": "apns", "token": "...", "preview": "hi"}]}
//! ```
//!
//! - `chat` is `{"type":"user","name":U}` (direct messages with U),
//!   `{"type":"group","id":N}`, `{"type":"service","name":S}` or `{"type":"support","id":N}`
//!   (a customer-support conversation); `chat_name` is what to show for it (the sender's
//!   display name, the group's name, the service's name, the shop's name).
//! - `sender_kind`: `"user"`, `"service"` or `"staff"` (a shop's agent); `kind`: `"text"`, `"image"`, `"audio"`,
//!   `"file"`, `"custom"` or `"system"`.
//! - `count`: messages this event stands for (the server coalesces a burst into one event
//!   with the latest message's details); `unread`: the badge number.
//! - `devices`: each device to wake, `platform` `"apns"`, `"fcm"`, `"webpush"` or
//!   `"other"`, with its own `preview` (the message's first characters, or `null` when the
//!   device turned previews off or the message has no text).
//!
//! Any 2xx status means delivered; redirects are not followed (a 3xx is retried like any
//! other failure).
//!
//! # The webhook's answer
//!
//! A 2xx answer's body MAY be a JSON object with a field `invalid_tokens`: the tokens of
//! this event's devices that the push service rejected as no longer valid (APNs
//! "Unregistered", FCM "UNREGISTERED": the app was removed or the token replaced).
//!
//! ```json
//! {"invalid_tokens": ["..."]}
//! ```
//!
//! For each listed token that is the token of one of the event's `devices`, the gateway
//! sends the server `DropPushToken { username: recipient, token }`, and the server forgets
//! every device of the recipient with that token, so later events do not name it. Tokens
//! that are not the event's devices' are ignored (a webhook cannot make the gateway drop
//! another user's tokens), and so is any other body: none, not JSON, not an object, other
//! fields, an `invalid_tokens` that is not a list of strings, or more than 64 KiB. The body
//! never changes whether the event is delivered; only the status does.
//!
//! The drops go on the gateway's connection before the ack that covers the event. They are
//! a hint, not a delivery: one lost (the connection dropped first) or refused by the server
//! (logged) is reported again by the webhook with the next event for that user, and one
//! repeated does no harm.

#![forbid(unsafe_code)]

pub mod acks;
pub mod backoff;
pub mod config;
pub mod dead_tokens;
pub mod deliver;
pub mod feed;
pub mod gateway;
pub mod link;
pub mod logger;
pub mod payload;
pub mod pool;
pub mod stop;
pub mod token;
pub mod webhook;
pub mod writer;
