//! Group invitations come back from clients as arbitrary text: opening one must never panic,
//! and only an invitation this server sealed may open.
#![no_main]

use libfuzzer_sys::fuzz_target;
use missive_logic::InvitationCodec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let codec = InvitationCodec::new(b"fuzz secret");
    if let Some(invitation) = codec.open(text) {
        // Without the secret no tag can be made, so whatever opens was sealed here.
        assert_eq!(codec.seal(&invitation), text);
    }
});
