/**
 * A real Redis Cluster on 127.0.0.1 for tests (never mocks): N masters with R
 * replicas each, every node a private redis-server started through
 * services.ts' startRedis(), so nodes live in their own scratch dirs, are
 * watched by the same shell watchdog (SIGKILLed if the test process dies) and
 * are stopped and removed by the same cleanupAll().
 *
 *   const cluster = await startRedisCluster();          // 3 masters + 3 replicas
 *   const c = new Cluster(cluster.seeds.map(...))        // ioredis Cluster client
 *   const m = await cluster.masterOf('logs:stream:{0}');
 *   cluster.kill(m); await cluster.waitFailover('logs:stream:{0}', m);
 *   await cluster.restart(m);                             // rejoins as a replica
 *
 * Topology questions (masters(), masterOf()...) are answered from CLUSTER NODES
 * as each live node reports ITSELF (its "myself" line): that is the truth for
 * that node even while gossip has not converged; dead nodes are described as
 * the live nodes see them.
 */
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort, startRedis, waitFor, type RedisServer } from './services';

const execFileP = promisify(execFile);

const HOST = '127.0.0.1';
const REDIS_CLI = '/usr/bin/redis-cli';
const SLOTS = 16384;

export interface ClusterNode {
  port: number;
  pid: number | undefined;
  dir: string;
  alive: boolean;
}

export interface RedisCluster {
  /** all nodes, fixed order (creation order; redis-cli decides which become replicas) */
  nodes: ClusterNode[];
  /** ["127.0.0.1:<port>", ...] of all nodes */
  seeds: string[];
  /** current masters (nodes with the master role that serve at least one slot) */
  masters(): Promise<ClusterNode[]>;
  /** current replicas */
  replicas(): Promise<ClusterNode[]>;
  /** the node currently master for the slot of `key` (honours {hash tags}) */
  masterOf(key: string): Promise<ClusterNode>;
  /** replicas of that master */
  replicasOf(master: ClusterNode): Promise<ClusterNode[]>;
  /** sends a signal (default SIGKILL) without waiting */
  kill(node: ClusterNode, signal?: NodeJS.Signals): void;
  /** same port, dir and nodes.conf; resolves when it answers PING and waitHealthy() holds */
  restart(node: ClusterNode): Promise<void>;
  /**
   * Resolves when every live node reports cluster_state:ok, every live node's
   * view maps all 16384 slots to the same live master (so whichever node a
   * client asks for the slot map, it gets a usable one), and every live
   * replica has master_link_status:up (so WAIT can be satisfied). Polls; no
   * fixed sleeps.
   */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** waits until `key`'s slot is served by a live master other than `oldMaster`; resolves with it */
  waitFailover(key: string, oldMaster: ClusterNode, timeoutMs?: number): Promise<ClusterNode>;
  /**
   * Moves the slot of `key` (with its keys) to master `to` the documented way:
   * SETSLOT IMPORTING on `to`, SETSLOT MIGRATING on the owner, MIGRATE the keys
   * in batches (GETKEYSINSLOT), then SETSLOT NODE on `to`, the old owner and the
   * other masters; resolves once every live node maps the slot to `to`.
   * `between` runs while the slot is MIGRATING and about half of its keys
   * (at least one, if any) already moved, so ASK redirections are live.
   */
  moveSlot(key: string, to: ClusterNode, between?: () => Promise<void>): Promise<void>;
  /** stops every node (SIGTERM); cleanupAll() removes their dirs */
  stop(): Promise<void>;
}

export interface RedisClusterOptions {
  /** default 3; redis-cli --cluster create needs at least 3 */
  masters?: number;
  /** default 1 */
  replicasPerMaster?: number;
  /** default 'always' */
  appendfsync?: 'always' | 'everysec';
  /** cluster-node-timeout, default 1000 ms */
  nodeTimeoutMs?: number;
}

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

// ---------------------------------------------------------------------------
// talking to one node

/** Runs one command on one node with a one-shot, never-retrying connection. */
async function command(port: number, args: (string | number)[], timeoutMs = 2000): Promise<unknown> {
  const r = new Redis({
    host: HOST,
    port,
    lazyConnect: true,
    enableOfflineQueue: false,
    enableReadyCheck: false, // a replica still loading would otherwise keep us waiting
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
  });
  r.on('error', () => undefined);
  try {
    await r.connect();
    const [cmd, ...rest] = args;
    return await r.call(String(cmd), ...rest);
  } finally {
    r.disconnect();
  }
}

interface NodeLine {
  id: string;
  port: number;
  myself: boolean;
  master: boolean;
  fail: boolean;
  masterId: string | undefined;
  /** [from, to] inclusive */
  slots: [number, number][];
}

/** Parses CLUSTER NODES (https://redis.io/docs/latest/commands/cluster-nodes/); importing/migrating entries are skipped. */
function parseNodes(text: string): NodeLine[] {
  const out: NodeLine[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(' ');
    if (f.length < 8) continue;
    const [id, addr, flags, masterId] = f as [string, string, string, string];
    const port = Number(/:(\d+)@/.exec(addr)?.[1] ?? /:(\d+)$/.exec(addr)?.[1]);
    const flagSet = new Set(flags.split(','));
    const slots: [number, number][] = [];
    for (const s of f.slice(8)) {
      if (s.startsWith('[')) continue;
      const [a, b] = s.split('-');
      slots.push([Number(a), Number(b ?? a)]);
    }
    out.push({
      id,
      port,
      myself: flagSet.has('myself'),
      master: flagSet.has('master'),
      fail: flagSet.has('fail'),
      masterId: masterId === '-' ? undefined : masterId,
      slots,
    });
  }
  return out;
}

const ownsSlot = (n: NodeLine, slot: number): boolean => n.slots.some(([a, b]) => slot >= a && slot <= b);

/** CRC16/XMODEM, the hash behind CLUSTER KEYSLOT. */
function crc16(s: string): number {
  let crc = 0;
  for (const byte of Buffer.from(s)) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** A key of `slot` (hash tag "{<n>}"; tags 0..~200000 cover every slot). */
const probeKeys = new Map<number, string>();
function keyInSlot(slot: number): string {
  let key = probeKeys.get(slot);
  for (let n = 0; key === undefined; n++) if (crc16(String(n)) % SLOTS === slot) key = `logd-test-cluster-probe:{${n}}`;
  probeKeys.set(slot, key);
  return key;
}

/** Writes nothing visible (MULTI SET+DEL) on a master and returns how many replicas acknowledged it within 100 ms. */
async function probeReplication(port: number, slot: number, replicas: number): Promise<number> {
  const r = new Redis({ host: HOST, port, lazyConnect: true, enableOfflineQueue: false, enableReadyCheck: false, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000, commandTimeout: 1000 });
  r.on('error', () => undefined);
  try {
    await r.connect();
    const key = keyInSlot(slot);
    await r.multi().set(key, '1').del(key).exec();
    return Number(await r.call('WAIT', replicas, 100));
  } catch {
    return 0;
  } finally {
    r.disconnect();
  }
}

// ---------------------------------------------------------------------------

class Node implements ClusterNode {
  constructor(readonly server: RedisServer) {}
  get port(): number {
    return this.server.port;
  }
  get dir(): string {
    return this.server.dir;
  }
  get pid(): number | undefined {
    return this.server.pid();
  }
  get alive(): boolean {
    return this.server.pid() !== undefined;
  }
}

interface Topology {
  /** port -> the node's own line when it is live and answered, else how the first live view sees it */
  byPort: Map<number, NodeLine>;
  /** every answering node's full view */
  views: { port: number; lines: NodeLine[] }[];
}

class ClusterImpl implements RedisCluster {
  readonly seeds: string[];

  constructor(readonly nodes: Node[]) {
    this.seeds = nodes.map((n) => `${HOST}:${n.port}`);
  }

  private node(port: number): Node {
    const n = this.nodes.find((x) => x.port === port);
    if (!n) throw new Error(`port ${port} is not a node of this cluster`);
    return n;
  }

  private own(node: ClusterNode): Node {
    return this.node(node.port);
  }

  private live(): Node[] {
    return this.nodes.filter((n) => n.alive);
  }

  private async topology(): Promise<Topology> {
    const answers = await Promise.all(
      this.live().map(async (n) => {
        try {
          return { port: n.port, lines: parseNodes(String(await command(n.port, ['CLUSTER', 'NODES'], 1000))) };
        } catch {
          return undefined;
        }
      }),
    );
    const views = answers.filter((a): a is { port: number; lines: NodeLine[] } => a !== undefined);
    if (views.length === 0) throw new Error('no live cluster node answered CLUSTER NODES');
    const byPort = new Map<number, NodeLine>();
    for (const v of views) {
      const self = v.lines.find((l) => l.myself);
      if (self) byPort.set(v.port, { ...self, port: v.port });
    }
    for (const l of views[0]!.lines) if (!byPort.has(l.port)) byPort.set(l.port, l);
    return { byPort, views };
  }

  async masters(): Promise<Node[]> {
    const { byPort } = await this.topology();
    return this.nodes.filter((n) => {
      const l = byPort.get(n.port);
      return l?.master && l.slots.length > 0;
    });
  }

  async replicas(): Promise<Node[]> {
    const { byPort } = await this.topology();
    return this.nodes.filter((n) => {
      const l = byPort.get(n.port);
      return l !== undefined && !l.master;
    });
  }

  async replicasOf(master: ClusterNode): Promise<Node[]> {
    const { byPort } = await this.topology();
    const id = byPort.get(master.port)?.id;
    return this.nodes.filter((n) => {
      const l = byPort.get(n.port);
      return l !== undefined && !l.master && l.masterId === id;
    });
  }

  async keySlot(key: string): Promise<number> {
    for (const n of this.live()) {
      try {
        return Number(await command(n.port, ['CLUSTER', 'KEYSLOT', key], 1000));
      } catch {
        // try the next one
      }
    }
    throw new Error('no live cluster node answered CLUSTER KEYSLOT');
  }

  async masterOf(key: string): Promise<Node> {
    const slot = await this.keySlot(key);
    const { byPort } = await this.topology();
    const owner = this.ownerOf(byPort, slot);
    if (!owner) throw new Error(`no node claims slot ${slot} (key ${key})`);
    return owner;
  }

  /** A live node that says it is master of `slot` itself; else whoever the first view names. */
  private ownerOf(byPort: Map<number, NodeLine>, slot: number): Node | undefined {
    const claims = this.nodes.filter((n) => {
      const l = byPort.get(n.port);
      return l?.master && ownsSlot(l, slot);
    });
    return claims.find((n) => n.alive) ?? claims[0];
  }

  kill(node: ClusterNode, signal: NodeJS.Signals = 'SIGKILL'): void {
    this.own(node).server.kill(signal);
  }

  async restart(node: ClusterNode): Promise<void> {
    await this.own(node).server.start(); // waits for the old process to exit, resolves on +PONG
    await this.waitHealthy();
  }

  async waitHealthy(timeoutMs = 15_000): Promise<void> {
    await waitFor('a healthy Redis Cluster', () => this.healthProblem().then((p) => p === undefined || undefined), timeoutMs, 50)
      .catch(async (err: Error) => {
        throw new Error(`${err.message}; last problem: ${await this.healthProblem().catch(errorText)}`, { cause: err });
      });
  }

  /** undefined when healthy, else what is wrong (for the timeout message). */
  private async healthProblem(): Promise<string | undefined> {
    const live = this.live();
    if (live.length === 0) return 'no live node';
    const infos = await Promise.all(live.map(async (n) => {
      try {
        return { n, state: String(await command(n.port, ['CLUSTER', 'INFO'], 1000)), repl: String(await command(n.port, ['INFO', 'replication'], 1000)) };
      } catch (err) {
        return { n, error: errorText(err) };
      }
    }));
    const online = new Set<number>();
    for (const i of infos) {
      if ('error' in i) return `${i.n.port}: ${i.error}`;
      for (const m of i.repl.matchAll(/^slave\d+:.*\bport=(\d+),state=online\b/gm)) online.add(Number(m[1]));
    }
    for (const i of infos) {
      if ('error' in i) continue;
      if (!/cluster_state:ok/.test(i.state)) return `${i.n.port}: not cluster_state:ok`;
      if (/role:slave/.test(i.repl) && !/master_link_status:up/.test(i.repl)) return `${i.n.port}: replica link down`;
      if (/role:slave/.test(i.repl) && !online.has(i.n.port)) return `${i.n.port}: not online at its master yet`;
    }
    const { byPort, views } = await this.topology();
    // all slots covered by live masters, as those masters say themselves
    const covered = new Uint8Array(SLOTS);
    const liveIds = new Map<string, number>();
    for (const n of live) {
      const l = byPort.get(n.port);
      if (!l) return `${n.port}: no CLUSTER NODES`;
      liveIds.set(l.id, n.port);
      if (!l.master) continue;
      for (const [a, b] of l.slots) covered.fill(1, a, b + 1);
    }
    // The master's INFO says state=online with the replica's acked offset even while it still holds
    // the replication stream back until the next REPLCONF ACK (up to 1 s after a resync: WAIT 1 500
    // was measured returning 0 right after restart()). So prove it: a write that leaves no trace
    // (MULTI SET+DEL of a probe key in one of its slots) must be acknowledged by all its replicas.
    for (const i of infos) {
      if ('error' in i || !/role:master/.test(i.repl)) continue;
      const replicas = Number(/connected_slaves:(\d+)/.exec(i.repl)?.[1] ?? 0);
      const own = byPort.get(i.n.port);
      if (replicas === 0 || !own?.slots.length) continue;
      const acked = await probeReplication(i.n.port, own.slots[0]![0], replicas);
      if (acked < replicas) return `${i.n.port}: only ${acked} of ${replicas} replicas acknowledged a write`;
    }
    const hole = covered.indexOf(0);
    if (hole >= 0) return `slot ${hole} has no live master`;
    // and every live node agrees
    for (const v of views) {
      const owner = new Array<string | undefined>(SLOTS);
      for (const l of v.lines) if (l.master) for (const [a, b] of l.slots) owner.fill(l.id, a, b + 1);
      for (let s = 0; s < SLOTS; s++) {
        const id = owner[s];
        if (id === undefined || !liveIds.has(id) || !byPort.get(liveIds.get(id)!)?.master || !ownsSlot(byPort.get(liveIds.get(id)!)!, s)) {
          return `${v.port} maps slot ${s} to ${id ?? 'nobody'}, not to a live master serving it`;
        }
      }
    }
    return undefined;
  }

  async waitFailover(key: string, oldMaster: ClusterNode, timeoutMs = 15_000): Promise<Node> {
    const slot = await this.keySlot(key);
    return waitFor(`a master other than ${oldMaster.port} for slot ${slot} (key ${key})`, async () => {
      const { byPort } = await this.topology();
      const owner = this.nodes.find((n) => n.alive && n.port !== oldMaster.port && byPort.get(n.port)?.master && ownsSlot(byPort.get(n.port)!, slot));
      return owner;
    }, timeoutMs, 25);
  }

  async moveSlot(key: string, to: ClusterNode, between?: () => Promise<void>): Promise<void> {
    const slot = await this.keySlot(key);
    const dst = this.own(to);
    const src = await this.masterOf(key);
    if (src === dst) {
      await between?.();
      return;
    }
    const { byPort } = await this.topology();
    const srcId = byPort.get(src.port)?.id;
    const dstLine = byPort.get(dst.port);
    if (!srcId || !dstLine?.master) throw new Error(`moveSlot: ${dst.port} is not a master`);
    const dstId = dstLine.id;

    await command(dst.port, ['CLUSTER', 'SETSLOT', slot, 'IMPORTING', srcId]);
    await command(src.port, ['CLUSTER', 'SETSLOT', slot, 'MIGRATING', dstId]);
    const migrate = async (count: number): Promise<number> => {
      const keys = (await command(src.port, ['CLUSTER', 'GETKEYSINSLOT', slot, count])) as string[];
      if (keys.length > 0) await command(src.port, ['MIGRATE', HOST, dst.port, '', 0, 10_000, 'KEYS', ...keys], 15_000);
      return keys.length;
    };
    const total = Number(await command(src.port, ['CLUSTER', 'COUNTKEYSINSLOT', slot]));
    if (total > 0) await migrate(Math.max(1, Math.floor(total / 2)));
    await between?.();
    while ((await migrate(100)) > 0);

    // The documented order: the importing node first (it bumps its config epoch), then the source, then the rest.
    await command(dst.port, ['CLUSTER', 'SETSLOT', slot, 'NODE', dstId]);
    await command(src.port, ['CLUSTER', 'SETSLOT', slot, 'NODE', dstId]);
    const others = this.live().filter((n) => n !== src && n !== dst && byPort.get(n.port)?.master);
    await Promise.all(others.map((n) => command(n.port, ['CLUSTER', 'SETSLOT', slot, 'NODE', dstId]).catch(() => undefined)));
    await waitFor(`every live node to map slot ${slot} to ${dst.port}`, async () => {
      const { views } = await this.topology();
      return views.length === this.live().length && views.every((v) => v.lines.some((l) => l.id === dstId && l.master && ownsSlot(l, slot)));
    }, 15_000, 25);
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.server.stop()));
  }
}

// ---------------------------------------------------------------------------

/**
 * Starts one node. The cluster bus normally listens on port+10000, which is
 * past 65535 for most ephemeral ports, so it gets its own free port
 * (cluster-port, Redis >= 7.0); if someone takes that one meanwhile, the node
 * is started again with another.
 */
async function startNode(args: string[], appendfsync: 'always' | 'everysec'): Promise<RedisServer> {
  for (let attempt = 1; ; attempt++) {
    const busPort = await freePort();
    try {
      return await startRedis({ appendfsync, extraArgs: [...args, '--cluster-port', String(busPort)] });
    } catch (err) {
      if (attempt >= 3 || !/address already in use/i.test(errorText(err))) throw err;
    }
  }
}

export async function startRedisCluster(opts: RedisClusterOptions = {}): Promise<RedisCluster> {
  const masters = opts.masters ?? 3;
  const replicasPerMaster = opts.replicasPerMaster ?? 1;
  if (!Number.isInteger(masters) || masters < 3) throw new Error('startRedisCluster: redis-cli --cluster create needs at least 3 masters');
  if (!Number.isInteger(replicasPerMaster) || replicasPerMaster < 0) throw new Error('startRedisCluster: replicasPerMaster must be an integer >= 0');
  const nodeTimeout = opts.nodeTimeoutMs ?? 1000;
  const args = [
    '--cluster-enabled', 'yes',
    '--cluster-config-file', 'nodes.conf', // relative to --dir, so restart() finds it again
    '--cluster-node-timeout', String(nodeTimeout),
    // `no`: when a master dies, the other masters keep serving their slots during the
    // node-timeout + election window (and forever, if it had no replica). With `yes` every node
    // says CLUSTERDOWN for ALL keys until the failover completes, so a failover test could not
    // tell "logd keeps writing the other shards" from "the whole cluster was down". Because
    // cluster_state:ok then no longer proves every slot is served, waitHealthy() checks the slots.
    '--cluster-require-full-coverage', 'no',
    // A replica whose link to its master has been down longer than node-timeout * factor refuses
    // to fail over; tests restart and kill nodes in quick succession, so always let it.
    '--cluster-replica-validity-factor', '0',
    // Redis 7 defaults to diskless sync delayed 5 s for more replicas to join: a replica (initial or
    // restarted) would wait 5 s for its full sync, and WAIT would return 0 meanwhile.
    '--repl-diskless-sync-delay', '0',
  ];
  const appendfsync = opts.appendfsync ?? 'always';
  const count = masters * (1 + replicasPerMaster);
  const started = await Promise.allSettled(Array.from({ length: count }, () => startNode(args, appendfsync)));
  const servers = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  const cluster = new ClusterImpl(servers.map((s) => new Node(s)));
  try {
    if (failed) throw failed.reason;
    try {
      await execFileP(REDIS_CLI, ['--cluster', 'create', ...cluster.seeds, '--cluster-replicas', String(replicasPerMaster), '--cluster-yes'], { timeout: 30_000 });
    } catch (err) {
      const out = err instanceof Error && 'stdout' in err ? `${String(err.stdout)}${String((err as { stderr?: unknown }).stderr ?? '')}` : '';
      throw new Error(`redis-cli --cluster create failed: ${errorText(err)}\n${out}\nnode logs: ${servers.map((s) => path.join(s.dir, 'redis.log')).join(' ')}`, { cause: err });
    }
    await cluster.waitHealthy();
    return cluster;
  } catch (err) {
    await cluster.stop().catch(() => undefined); // dirs are kept (cleanupAll removes them): the error names the logs
    throw err;
  }
}
