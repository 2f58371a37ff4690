// The browser's storage: one IndexedDB database per server and account, with the items keyed
// by version and the rest (session, SyncKey, application values) in a second store. A SYNC
// answer's items and its key are written in one transaction.

import type { Session, Storage, Stored } from "./storage.js";

const ITEMS = "items";
const META = "meta";

function promised<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function done(transaction: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    transaction.oncomplete = () => resolve();
    transaction.onerror = () => reject(transaction.error);
    transaction.onabort = () => reject(transaction.error ?? new Error("transaction aborted"));
  });
}

/** Versions as IndexedDB keys: numbers sort as the versions do up to 2^53. */
function keyOf(version: bigint): number {
  if (version > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`version ${version} too large`);
  return Number(version);
}

interface StoredSession {
  token: string;
  userId: string;
  deviceId: string;
  username: string;
}

export class IndexedDbStorage implements Storage {
  private constructor(private readonly db: IDBDatabase) {}

  /** Opens (creating it the first time) the database called `name`. */
  static async open(name: string, factory: IDBFactory = indexedDB): Promise<IndexedDbStorage> {
    const request = factory.open(name, 1);
    request.onupgradeneeded = () => {
      request.result.createObjectStore(ITEMS);
      request.result.createObjectStore(META);
    };
    return new IndexedDbStorage(await promised(request));
  }

  close(): void {
    this.db.close();
  }

  async load(): Promise<Stored> {
    const transaction = this.db.transaction([ITEMS, META], "readonly");
    const meta = transaction.objectStore(META);
    const [items, session, syncKey] = await Promise.all([
      promised(transaction.objectStore(ITEMS).getAll() as IDBRequest<Uint8Array[]>),
      promised(meta.get("session") as IDBRequest<StoredSession | undefined>),
      promised(meta.get("syncKey") as IDBRequest<Uint8Array | undefined>),
    ]);
    return {
      session: session && {
        token: session.token,
        userId: BigInt(session.userId),
        deviceId: BigInt(session.deviceId),
        username: session.username,
      },
      syncKey: syncKey ?? new Uint8Array(),
      items,
    };
  }

  async saveSession(session: Session | undefined): Promise<void> {
    const transaction = this.db.transaction(META, "readwrite");
    const meta = transaction.objectStore(META);
    if (session) {
      const stored: StoredSession = {
        token: session.token,
        userId: String(session.userId),
        deviceId: String(session.deviceId),
        username: session.username,
      };
      meta.put(stored, "session");
    } else {
      meta.delete("session");
    }
    await done(transaction);
  }

  async commit(items: { version: bigint; bytes: Uint8Array }[], syncKey: Uint8Array): Promise<void> {
    const transaction = this.db.transaction([ITEMS, META], "readwrite");
    const store = transaction.objectStore(ITEMS);
    for (const item of items) store.put(item.bytes, keyOf(item.version));
    transaction.objectStore(META).put(syncKey, "syncKey");
    await done(transaction);
  }

  async clearItems(): Promise<void> {
    const transaction = this.db.transaction([ITEMS, META], "readwrite");
    transaction.objectStore(ITEMS).clear();
    transaction.objectStore(META).delete("syncKey");
    await done(transaction);
  }

  async getValue(key: string): Promise<string | undefined> {
    const transaction = this.db.transaction(META, "readonly");
    return (await promised(transaction.objectStore(META).get(`value:${key}`))) as string | undefined;
  }

  async setValue(key: string, value: string | undefined): Promise<void> {
    const transaction = this.db.transaction(META, "readwrite");
    const meta = transaction.objectStore(META);
    if (value === undefined) meta.delete(`value:${key}`);
    else meta.put(value, `value:${key}`);
    await done(transaction);
  }
}
