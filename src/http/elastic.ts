import type { Route } from './routes';

export const ELASTIC_ROUTES: Route[] = [];
