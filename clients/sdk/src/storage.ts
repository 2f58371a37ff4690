// Where a client keeps what it has synced: the session, the SyncKey and the items, so that a
// restart (a page reload) resumes from the stored key without fetching everything again and
// without showing anything twice. In memory here; in IndexedDB in a browser (indexeddb.ts).

export interface Session {
  token: string;
  userId: bigint;
  deviceId: bigint;
  username: string;
}

/** What a storage holds, as `load` returns it. */
export interface Stored {
  session: Session | undefined;
  /** Empty before the first SYNC. */
  syncKey: Uint8Array;
  /** Every item stored, each as the server encoded it (a `SyncItem`), oldest first. */
  items: Uint8Array[];
}

export interface Storage {
  load(): Promise<Stored>;
  saveSession(session: Session | undefined): Promise<void>;
  /** Adds one SYNC answer's items (by version: an item stored again replaces itself) and
   * its new key, both or neither. */
  commit(items: { version: bigint; bytes: Uint8Array }[], syncKey: Uint8Array): Promise<void>;
  /** Forgets the key and every item, keeping the session (a key the server no longer takes). */
  clearItems(): Promise<void>;
  /** A small value of the application's (a draft, a group read mark). */
  getValue(key: string): Promise<string | undefined>;
  setValue(key: string, value: string | undefined): Promise<void>;
}

/** A storage that lives as long as the object: under Node, in tests, or for a client that
 * syncs from the start each time. */
export class MemoryStorage implements Storage {
  private session: Session | undefined;
  private syncKey: Uint8Array = new Uint8Array();
  private readonly items = new Map<bigint, Uint8Array>();
  private readonly values = new Map<string, string>();

  async load(): Promise<Stored> {
    const versions = [...this.items.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return {
      session: this.session,
      syncKey: this.syncKey,
      items: versions.map((version) => this.items.get(version)!),
    };
  }

  async saveSession(session: Session | undefined): Promise<void> {
    this.session = session;
  }

  async commit(items: { version: bigint; bytes: Uint8Array }[], syncKey: Uint8Array): Promise<void> {
    for (const item of items) this.items.set(item.version, item.bytes);
    this.syncKey = syncKey;
  }

  async clearItems(): Promise<void> {
    this.items.clear();
    this.syncKey = new Uint8Array();
  }

  async getValue(key: string): Promise<string | undefined> {
    return this.values.get(key);
  }

  async setValue(key: string, value: string | undefined): Promise<void> {
    if (value === undefined) this.values.delete(key);
    else this.values.set(key, value);
  }
}
