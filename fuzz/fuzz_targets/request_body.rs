//! Every command's request body, as protobuf and as JSON: decoding arbitrary bytes must never
//! panic, whatever the command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use missive_access::dispatch::{Format, decode};
use missive_proto::client::*;

fuzz_target!(|data: &[u8]| {
    for format in [Format::Protobuf, Format::Json] {
        let _ = decode::<AuthRequest>(data, format);
        let _ = decode::<PingRequest>(data, format);
        let _ = decode::<RegisterRequest>(data, format);
        let _ = decode::<LoginRequest>(data, format);
        let _ = decode::<LogoutRequest>(data, format);
        let _ = decode::<GetProfileRequest>(data, format);
        let _ = decode::<UpdateProfileRequest>(data, format);
        let _ = decode::<SendRequest>(data, format);
        let _ = decode::<SyncRequest>(data, format);
    }
});
