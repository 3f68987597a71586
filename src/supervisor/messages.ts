/** Messages between the primary and its children (node:cluster IPC). */
export type ToChild = { type: 'shutdown' };
export type FromChild = { type: 'ready' };

export const ROLE_ENV = 'LOGD_ROLE';
export const CONFIG_ENV = 'LOGD_RUNTIME_CONFIG';
export type Role = 'http' | 'persister';
