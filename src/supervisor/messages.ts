/** Messages between the primary and its children (node:cluster IPC). */
export type ToChild = { type: 'shutdown' };
export type FromChild = { type: 'ready' };

export const ROLE_ENV = 'LOGD_ROLE';
export const CONFIG_ENV = 'LOGD_RUNTIME_CONFIG';
/** Which of the node's persister.count persisters a persister process is (0 = the first). */
export const PERSISTER_INDEX_ENV = 'LOGD_PERSISTER_INDEX';
export type Role = 'http' | 'persister';
