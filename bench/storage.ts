// Where the bench's servers (and etcd) keep their files. "disk": the temp folder, on this machine
// an ext4 disk, where every SQLite commit pays its WAL writes and an fsync. "memory": tmpfs
// (/dev/shm), where an fsync costs nothing. Miniflare without a persist folder still writes to the
// temp folder, so memory means a persist folder on tmpfs.
//
// Why it matters (measured: docs/PERFORMANCE.md, "Storage"): every object's commits
// end in an fsync of its WAL, and all the objects of both workerd processes share the one ext4
// journal of this machine's one disk. Two processes standing for two machines then queue on one
// disk, which two machines would not: the smr-sharded pair runs on memory for its target, and on
// disk as well in a full run, to show that ceiling.
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";

export type Storage = "disk" | "memory";

export const storages: readonly Storage[] = ["disk", "memory"];

/** The value of a --storage flag (disk when absent); throws on anything else. */
export function parseStorage(s: string | undefined): Storage {
  const v = s ?? "disk";
  if (!(storages as readonly string[]).includes(v)) throw new Error(`--storage ${v}: disk or memory`);
  return v as Storage;
}

/** The folder a server of this storage keeps its files under. */
export function storageRoot(storage: Storage): string {
  if (storage === "disk") return tmpdir();
  if (!existsSync("/dev/shm")) throw new Error("memory storage needs a tmpfs at /dev/shm");
  return "/dev/shm";
}
