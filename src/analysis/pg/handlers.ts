// Every node handler, by node type. Kept apart from walk.ts so that the handler
// modules depend on the walker and not the other way round.

import { EXPRESSION_HANDLERS } from './expressions.js';
import { QUERY_HANDLERS } from './queries.js';
import { UTILITY_HANDLERS } from './utility.js';
import type { Handler } from './walk.js';

/** Node handlers by node type; a type missing here has all its fields visited. */
export const HANDLERS: ReadonlyMap<string, Handler> = new Map([...EXPRESSION_HANDLERS, ...QUERY_HANDLERS, ...UTILITY_HANDLERS]);
