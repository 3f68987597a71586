import type { Route } from './routes';

export const LOKI_ROUTES: Route[] = [];
