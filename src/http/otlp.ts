import type { Route } from './routes';

export const OTLP_ROUTES: Route[] = [];
