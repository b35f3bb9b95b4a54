//! Customer support with real `confab-chat` processes in line mode against the real
//! confabd: a customer writes to a shop with `/shop`, staff list with `/support`, answer
//! with `/reply` (which claims), and pass conversations on with `/handover` and
//! `/release` (harness in `common`).
//!
//! Absence is shown by order, never by waiting: "carol is sent nothing while bob holds
//! it" means carol's next message line is one sent after the release.

mod common;

use common::{drop_field, text_of, Chat, Fixture};

/// The next support line (a message, a claim or a release) of conversation `id`.
fn next_in(chat: &mut Chat, id: &str) -> String {
    let field = format!("support={id} ");
    chat.wait_for("a support line", |line| {
        (line.starts_with("message ") || line.starts_with("claimed ") || line.starts_with("released "))
            && line.contains(&field)
    })
}

/// The id in a `message ... support=ID ...` line.
fn support_of(line: &str) -> String {
    let (_, after) = line.split_once(" support=").expect("a support message");
    after.split_whitespace().next().expect("an id").to_string()
}

#[test]
fn a_customer_writes_to_a_shop_and_its_staff_answer_claim_hand_over_and_release() {
    let fx = Fixture::with_shop("acme", &["bob", "carol"], &["alice"]);
    let mut bob = fx.chat("bob");
    let mut carol = fx.chat("carol");
    let mut alice = fx.chat("alice");
    bob.login("bob");
    bob.send("/rename Bob Smith");
    bob.expect("renamed ");
    carol.login("carol");
    alice.login("alice");

    alice.send("/shop acme where is my order?");
    assert_eq!(drop_field(&alice.expect("sent "), "id"), "sent seq=1 shop=acme");
    let got = bob.next_message();
    let id = support_of(&got);
    assert!(got.starts_with("message seq=1 from=alice at="), "{got}");
    assert_eq!(text_of(&got), "where is my order?");
    assert!(carol.next_message().starts_with("message seq=1 from=alice at="));

    // Staff list the shop's conversations: who wrote, nobody holds it, one unread.
    carol.send("/support acme");
    assert_eq!(carol.expect("support "), "support count=1 more=false");
    let listed = carol.expect("conversation ");
    assert!(
        listed.starts_with(&format!("conversation id={id} shop=acme customer=alice claimed_by=- unread=")),
        "{listed}"
    );

    // bob's reply claims it; both staff hear so; alice sees it from the shop, naming bob.
    // (The claim is announced before the reply is stored, so before its receipt.)
    bob.send(&format!("/reply {id} on its way"));
    let claimed = format!("claimed support={id} shop=acme customer=alice agent=bob");
    assert_eq!(next_in(&mut bob, &id), claimed);
    assert_eq!(drop_field(&bob.expect("sent "), "id"), format!("sent seq=2 support={id}"));
    assert_eq!(next_in(&mut carol, &id), claimed);
    let reply = alice.next_message();
    assert!(reply.starts_with("message seq=2 from=acme name=Bob\\u{20}Smith at="), "{reply}");
    assert!(reply.contains(&format!(" support={id} staff=true text=on its way")), "{reply}");

    // bob hands it to carol, who is sent it from then on (with what is still stored of
    // what she missed: bob's reply, unless alice and bob have acknowledged it by then);
    // then she releases it.
    bob.send(&format!("/handover {id} carol"));
    let to_carol = format!("claimed support={id} shop=acme customer=alice agent=carol");
    assert_eq!(next_in(&mut bob, &id), to_carol);
    bob.expect(&format!("done handover support={id} user=carol"));
    assert_eq!(next_in(&mut carol, &id), to_carol);
    alice.send(&format!("/reply {id} thanks"));
    assert_eq!(drop_field(&alice.expect("sent "), "id"), format!("sent seq=3 support={id}"));
    carol.wait_for("alice's thanks", |line| line.starts_with("message seq=3 from=alice "));
    carol.send(&format!("/release {id}"));
    let released = format!("released support={id} shop=acme customer=alice");
    assert_eq!(next_in(&mut carol, &id), released);
    carol.expect(&format!("done release support={id}"));
    // Nothing of the conversation reached bob while carol held it: his next line of it is
    // the release.
    assert_eq!(next_in(&mut bob, &id), released);
    alice.send(&format!("/reply {id} still there?"));
    assert_eq!(drop_field(&alice.expect("sent "), "id"), format!("sent seq=4 support={id}"));
    bob.wait_for("alice's question", |line| line.starts_with("message seq=4 from=alice "));

    // The customer's own list.
    alice.send("/support");
    assert_eq!(alice.expect("support "), "support count=1 more=false");
    let mine = alice.expect("conversation ");
    assert!(mine.starts_with(&format!("conversation id={id} shop=acme customer=alice claimed_by=- ")), "{mine}");
    // Someone who is not staff may not claim it.
    alice.send(&format!("/claim {id}"));
    assert!(alice.expect("error ").starts_with("error Forbidden: "));
    bob.finish();
    carol.finish();
    alice.finish();
}
