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
        let _ = decode::<FriendRequestRequest>(data, format);
        let _ = decode::<FriendRespondRequest>(data, format);
        let _ = decode::<FriendRemoveRequest>(data, format);
        let _ = decode::<SetBlockedRequest>(data, format);
        let _ = decode::<SetRemarkRequest>(data, format);
        let _ = decode::<ListContactsRequest>(data, format);
        let _ = decode::<GroupCreateRequest>(data, format);
        let _ = decode::<GroupInviteRequest>(data, format);
        let _ = decode::<GroupRemoveRequest>(data, format);
        let _ = decode::<GroupLeaveRequest>(data, format);
        let _ = decode::<GroupUpdateRequest>(data, format);
        let _ = decode::<GroupSetAdminRequest>(data, format);
        let _ = decode::<GroupTransferRequest>(data, format);
        let _ = decode::<GroupDissolveRequest>(data, format);
        let _ = decode::<GroupInfoRequest>(data, format);
        let _ = decode::<UploadRequest>(data, format);
        let _ = decode::<DownloadRequest>(data, format);
        let _ = decode::<RecallRequest>(data, format);
        let _ = decode::<MarkReadRequest>(data, format);
    }
});
