// Every command of protocol version 3 (docs/protocol.md §6.1): its number, its short-link
// name, and the messages it takes and answers.

import type { DescMessage } from "@bufbuild/protobuf";
import * as pb from "./gen/client_pb.js";

export interface CommandSpec<I extends DescMessage = DescMessage, O extends DescMessage = DescMessage> {
  readonly command: pb.Command;
  /** `POST /v1/<name>` on the short link. */
  readonly name: string;
  readonly request: I;
  readonly response: O;
  /** Served without a session (before AUTH; without a bearer token). */
  readonly anonymous: boolean;
  /** Changes what the caller's own SYNC returns (a message, a contact, a group, the profile);
   * the acting device gets no NOTIFY for it (§8), so a client syncs after it. */
  readonly writes: boolean;
}

const READS_ONLY = [
  pb.Command.AUTH,
  pb.Command.PING,
  pb.Command.REGISTER,
  pb.Command.LOGIN,
  pb.Command.LOGOUT,
  pb.Command.GET_PROFILE,
  pb.Command.SYNC,
  pb.Command.LIST_CONTACTS,
  pb.Command.GROUP_INFO,
  pb.Command.UPLOAD,
  pb.Command.DOWNLOAD,
  pb.Command.UPLOAD_BEGIN,
  pb.Command.UPLOAD_PART,
  pb.Command.TYPING,
  pb.Command.GET_PRESENCE,
  pb.Command.SEARCH,
  pb.Command.PUSHER_SET,
  pb.Command.PUSHER_REMOVE,
  pb.Command.PUSHER_LIST,
];

function spec<I extends DescMessage, O extends DescMessage>(
  command: pb.Command,
  request: I,
  response: O,
): CommandSpec<I, O> {
  const anonymous = [pb.Command.AUTH, pb.Command.PING, pb.Command.REGISTER, pb.Command.LOGIN].includes(
    command,
  );
  const writes = !READS_ONLY.includes(command);
  return { command, name: pb.Command[command].toLowerCase(), request, response, anonymous, writes };
}

export const COMMANDS = {
  auth: spec(pb.Command.AUTH, pb.AuthRequestSchema, pb.AuthResponseSchema),
  ping: spec(pb.Command.PING, pb.PingRequestSchema, pb.PingResponseSchema),
  register: spec(pb.Command.REGISTER, pb.RegisterRequestSchema, pb.RegisterResponseSchema),
  login: spec(pb.Command.LOGIN, pb.LoginRequestSchema, pb.LoginResponseSchema),
  logout: spec(pb.Command.LOGOUT, pb.LogoutRequestSchema, pb.LogoutResponseSchema),
  getProfile: spec(pb.Command.GET_PROFILE, pb.GetProfileRequestSchema, pb.GetProfileResponseSchema),
  updateProfile: spec(
    pb.Command.UPDATE_PROFILE,
    pb.UpdateProfileRequestSchema,
    pb.UpdateProfileResponseSchema,
  ),
  send: spec(pb.Command.SEND, pb.SendRequestSchema, pb.SendResponseSchema),
  sync: spec(pb.Command.SYNC, pb.SyncRequestSchema, pb.SyncResponseSchema),
  friendRequest: spec(pb.Command.FRIEND_REQUEST, pb.FriendRequestRequestSchema, pb.ContactResponseSchema),
  friendRespond: spec(pb.Command.FRIEND_RESPOND, pb.FriendRespondRequestSchema, pb.ContactResponseSchema),
  friendRemove: spec(pb.Command.FRIEND_REMOVE, pb.FriendRemoveRequestSchema, pb.ContactResponseSchema),
  setBlocked: spec(pb.Command.SET_BLOCKED, pb.SetBlockedRequestSchema, pb.ContactResponseSchema),
  setRemark: spec(pb.Command.SET_REMARK, pb.SetRemarkRequestSchema, pb.ContactResponseSchema),
  listContacts: spec(
    pb.Command.LIST_CONTACTS,
    pb.ListContactsRequestSchema,
    pb.ListContactsResponseSchema,
  ),
  groupCreate: spec(pb.Command.GROUP_CREATE, pb.GroupCreateRequestSchema, pb.GroupResponseSchema),
  groupInvite: spec(pb.Command.GROUP_INVITE, pb.GroupInviteRequestSchema, pb.GroupResponseSchema),
  groupRemove: spec(pb.Command.GROUP_REMOVE, pb.GroupRemoveRequestSchema, pb.GroupResponseSchema),
  groupLeave: spec(pb.Command.GROUP_LEAVE, pb.GroupLeaveRequestSchema, pb.GroupResponseSchema),
  groupUpdate: spec(pb.Command.GROUP_UPDATE, pb.GroupUpdateRequestSchema, pb.GroupResponseSchema),
  groupSetAdmin: spec(pb.Command.GROUP_SET_ADMIN, pb.GroupSetAdminRequestSchema, pb.GroupResponseSchema),
  groupTransfer: spec(pb.Command.GROUP_TRANSFER, pb.GroupTransferRequestSchema, pb.GroupResponseSchema),
  groupDissolve: spec(pb.Command.GROUP_DISSOLVE, pb.GroupDissolveRequestSchema, pb.GroupResponseSchema),
  groupInfo: spec(pb.Command.GROUP_INFO, pb.GroupInfoRequestSchema, pb.GroupResponseSchema),
  groupJoin: spec(pb.Command.GROUP_JOIN, pb.GroupJoinRequestSchema, pb.GroupResponseSchema),
  upload: spec(pb.Command.UPLOAD, pb.UploadRequestSchema, pb.UploadResponseSchema),
  download: spec(pb.Command.DOWNLOAD, pb.DownloadRequestSchema, pb.DownloadResponseSchema),
  recall: spec(pb.Command.RECALL, pb.RecallRequestSchema, pb.RecallResponseSchema),
  markRead: spec(pb.Command.MARK_READ, pb.MarkReadRequestSchema, pb.MarkReadResponseSchema),
  uploadBegin: spec(pb.Command.UPLOAD_BEGIN, pb.UploadBeginRequestSchema, pb.UploadBeginResponseSchema),
  uploadPart: spec(pb.Command.UPLOAD_PART, pb.UploadPartRequestSchema, pb.UploadPartResponseSchema),
  edit: spec(pb.Command.EDIT, pb.EditRequestSchema, pb.EditResponseSchema),
  react: spec(pb.Command.REACT, pb.ReactRequestSchema, pb.ReactResponseSchema),
  search: spec(pb.Command.SEARCH, pb.SearchRequestSchema, pb.SearchResponseSchema),
  pusherSet: spec(pb.Command.PUSHER_SET, pb.PusherSetRequestSchema, pb.PusherSetResponseSchema),
  pusherRemove: spec(pb.Command.PUSHER_REMOVE, pb.PusherRemoveRequestSchema, pb.PusherRemoveResponseSchema),
  pusherList: spec(pb.Command.PUSHER_LIST, pb.PusherListRequestSchema, pb.PusherListResponseSchema),
  setMuted: spec(pb.Command.SET_MUTED, pb.SetMutedRequestSchema, pb.ContactResponseSchema),
  typing: spec(pb.Command.TYPING, pb.TypingRequestSchema, pb.TypingResponseSchema),
  setPrivacy: spec(pb.Command.SET_PRIVACY, pb.SetPrivacyRequestSchema, pb.SetPrivacyResponseSchema),
  getPresence: spec(pb.Command.GET_PRESENCE, pb.GetPresenceRequestSchema, pb.GetPresenceResponseSchema),
} as const;

export type Commands = typeof COMMANDS;
export type CommandName = keyof Commands;
