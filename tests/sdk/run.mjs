#!/usr/bin/env node
// Drives the official SDKs (`openai`, `@anthropic-ai/sdk`) against a running
// llm-router, so that its OpenAI and Anthropic surfaces are judged by the real
// clients rather than by our own reading of the formats.
//
//   cd tests/sdk && npm ci          # once; node_modules is not committed
//   BASE_URL=http://127.0.0.1:PORT API_KEY=... MODEL=... node tests/sdk/run.mjs <scenario>
//
// Environment:
//   BASE_URL     the router's origin (a trailing "/" or "/v1" is removed). The
//                OpenAI client gets BASE_URL + "/v1"; the Anthropic client gets
//                BASE_URL (it adds "/v1/messages" itself).
//   API_KEY      the router's client key.
//   MODEL        the model (or group) name to send.
//   TOOL_CHOICE  optional, for the *-tools scenarios: openai "required"
//                (default) | "auto" | "none"; anthropic "any" (default) |
//                "auto" | "none".
//
// Both clients: maxRetries 0, timeout 20 s. ANTHROPIC_CUSTOM_HEADERS is
// cleared and OpenAI's organization/project are null, so the environment adds
// no headers.
//
// Output: exactly ONE line of JSON on stdout, exit status 0, whether or not the
// API calls succeeded. Exit status 1 (with a JSON line carrying
// "harness_error", and a message on stderr) only for a usage error or a bug in
// this script. Every line has:
//   scenario  the scenario name
//   ok        true when every SDK call of the scenario resolved; false when one
//             threw (the scenario stops there; what earlier steps produced is kept)
//   http      [{method, path, auth}] for each HTTP request the SDK sent; path
//             includes the query; auth is "x-api-key" | "bearer" |
//             "x-api-key+bearer" | "none" (which header carried the key)
// and when ok is false, the error (from any scenario, not only *-error):
//   step          which call failed (see each scenario)
//   error_class   the thrown class: BadRequestError, AuthenticationError,
//                 PermissionDeniedError, NotFoundError, RateLimitError,
//                 InternalServerError (any status >= 500, 529 too), APIError
//                 (other statuses, or an error event inside a 200 stream: status
//                 null), APIConnectionError, APIConnectionTimeoutError,
//                 AnthropicError / OpenAIError (client-side checks such as a bad
//                 stream order or a missing finish_reason), …
//   status        HTTP status, or null
//   error_type    the error body's error.type (both SDKs), or null
//   code          OpenAI error.code / Anthropic details.error_code, or null
//   message       the SDK's message ("429 {...}" and the like)
//   request_id    from x-request-id (OpenAI) / request-id (Anthropic), or null
//   cause         the underlying network error's code or message, or null
//
// Scenarios and their extra fields (on success):
//   openai-chat         chat.completions.create({model, messages: system "Be brief." + user "Hello"})
//                       step "create" → {id, object, model, role, content, finish_reason, usage, request_id}
//   openai-stream       create({stream: true, stream_options: {include_usage: true}}), iterated;
//                       then chat.completions.stream(...).finalChatCompletion()
//                       steps "stream", "final" → {text (joined delta.content), chunks (count),
//                       role (first delta.role), finish_reason, usage (last non-null chunk.usage),
//                       final: {content, finish_reason, usage}}
//   openai-tools        one function tool get_weather({city}), tool_choice "required"; create, then
//                       stream(...).finalChatCompletion()
//                       steps "create", "stream" → {tool_calls: [{id, type, name, arguments (string)}],
//                       finish_reason, content, stream: {tool_calls, finish_reason, content}}
//   openai-error        chat.completions.create to MODEL, expected to fail
//                       step "create" → the error fields above (or, if it succeeded, {content, finish_reason})
//   openai-models       models.list(), every page → step "list" → {ids, first (the first entry as returned)}
//   openai-embeddings   embeddings.create({model, input: ["a", "b"]}) (the SDK sends
//                       encoding_format "base64" and decodes) → step "create" →
//                       {count (data.length), dims (length of data[0].embedding), usage, model}
//   anthropic-messages  new Anthropic({baseURL, authToken: API_KEY, apiKey: null}): the key goes as
//                       "Authorization: Bearer", as for coding agents with ANTHROPIC_AUTH_TOKEN;
//                       messages.create({model, max_tokens: 256, system: "Be brief.",
//                       messages: [{role: "user", content: "Hello"}]})
//                       step "create" → {id, type, role, model, text (text blocks joined),
//                       content_types, stop_reason, stop_sequence, usage, request_id, auth}
//   anthropic-stream    the same request with messages.stream(...), iterated, then
//                       await stream.finalMessage()
//                       step "stream" → {id, model, text, content_types, stop_reason, usage,
//                       events (count of stream events the SDK yielded; it drops "ping"),
//                       sequence (their types in order, runs collapsed: "content_block_delta*5")}
//                       (events and sequence are also kept when the stream fails midway)
//   anthropic-tools     one tool get_weather (input_schema with required city), tool_choice
//                       {type: "any"}; create, then stream(...).finalMessage()
//                       steps "create", "stream" → {tool_use: [{id, name, input}], stop_reason,
//                       text, content_types, stream: {tool_use, stop_reason, text, content_types, events,
//                       sequence}}
//   anthropic-error     messages.create to MODEL, expected to fail
//                       step "create" → the error fields above (or, if it succeeded, {text, stop_reason})
//   anthropic-models    models.list(), following pages (at most 20) → step "list" →
//                       {ids, pages, truncated (true if the page limit stopped it), first}
//   anthropic-x-api-key as anthropic-messages, but the key goes as "x-api-key". SDK 1.x sends
//                       `apiKey` as "Authorization: Bearer" too, so the client is built with
//                       apiKey: API_KEY and defaultHeaders {"X-Api-Key": API_KEY,
//                       Authorization: null}: on the wire only x-api-key, as Claude Code and
//                       the 0.x SDKs send ANTHROPIC_API_KEY. Same fields as anthropic-messages.

import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';

const TIMEOUT_MS = 20_000;

class HarnessError extends Error {}

/** An SDK call that threw: the scenario reports it and stops. */
class ApiFailure extends Error {
  constructor(step, cause) {
    super(`${step} failed`);
    this.step = step;
    this.cause = cause;
  }
}

const http = [];

function authOf(headers) {
  const key = headers.has('x-api-key');
  const bearer = /^bearer /i.test(headers.get('authorization') ?? '');
  return key && bearer ? 'x-api-key+bearer' : key ? 'x-api-key' : bearer ? 'bearer' : 'none';
}

/** The SDKs' fetch, recording what goes on the wire. */
function recordingFetch(input, init) {
  const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
  const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
  http.push({ method: init?.method ?? 'GET', path: url.pathname + url.search, auth: authOf(headers) });
  return fetch(input, init);
}

/** Runs one SDK call; a throw becomes an ApiFailure naming the step. */
async function sdk(step, fn) {
  try {
    return await fn();
  } catch (err) {
    throw new ApiFailure(step, err);
  }
}

function errorFields(err) {
  const body = err?.error;
  return {
    error_class: err?.constructor?.name ?? typeof err,
    status: typeof err?.status === 'number' ? err.status : null,
    error_type: err?.type ?? body?.error?.type ?? body?.type ?? null,
    code: err?.code ?? err?.errorCode ?? null,
    message: String(err?.message ?? err),
    request_id: err?.requestID ?? null,
    cause: err?.cause?.code ?? err?.cause?.cause?.code ?? err?.cause?.message ?? null,
  };
}

/** ["a", "b", "b"] → ["a", "b*2"] */
function collapse(types) {
  const out = [];
  for (const t of types) {
    const last = out[out.length - 1];
    if (last && last.name === t) last.n += 1;
    else out.push({ name: t, n: 1 });
  }
  return out.map(({ name, n }) => (n > 1 ? `${name}*${n}` : name));
}

// ------------------------------------------------------------------ env

function usage(msg) {
  throw new HarnessError(
    `${msg}\nusage: BASE_URL=http://127.0.0.1:PORT API_KEY=... MODEL=... node run.mjs <scenario>\n` +
      `scenarios: ${Object.keys(SCENARIOS).join(', ')}`,
  );
}

function env() {
  const { BASE_URL, API_KEY, MODEL } = process.env;
  if (!BASE_URL || !API_KEY || !MODEL) usage('BASE_URL, API_KEY and MODEL must be set');
  delete process.env.ANTHROPIC_CUSTOM_HEADERS;
  const origin = BASE_URL.replace(/\/+$/, '').replace(/\/v1$/, '');
  return { origin, key: API_KEY, model: MODEL, toolChoice: process.env.TOOL_CHOICE || null };
}

function openai(e) {
  return new OpenAI({
    baseURL: `${e.origin}/v1`,
    apiKey: e.key,
    organization: null,
    project: null,
    maxRetries: 0,
    timeout: TIMEOUT_MS,
    fetch: recordingFetch,
  });
}

function anthropicBearer(e) {
  return new Anthropic({
    baseURL: e.origin,
    authToken: e.key,
    apiKey: null,
    maxRetries: 0,
    timeout: TIMEOUT_MS,
    fetch: recordingFetch,
  });
}

function anthropicXApiKey(e) {
  return new Anthropic({
    baseURL: e.origin,
    apiKey: e.key,
    defaultHeaders: { 'X-Api-Key': e.key, Authorization: null },
    maxRetries: 0,
    timeout: TIMEOUT_MS,
    fetch: recordingFetch,
  });
}

// -------------------------------------------------------------- requests

const HELLO = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Hello' },
];

const OPENAI_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Get the current weather for a city.',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string', description: 'The city name' } },
      required: ['city'],
    },
  },
};

const ANTHROPIC_TOOL = {
  name: 'get_weather',
  description: 'Get the current weather for a city.',
  input_schema: {
    type: 'object',
    properties: { city: { type: 'string', description: 'The city name' } },
    required: ['city'],
  },
};

function anthropicHello(e) {
  return {
    model: e.model,
    max_tokens: 256,
    system: 'Be brief.',
    messages: [{ role: 'user', content: 'Hello' }],
  };
}

function anthropicTools(e) {
  return {
    model: e.model,
    max_tokens: 256,
    messages: [{ role: 'user', content: "What's the weather in Paris?" }],
    tools: [ANTHROPIC_TOOL],
    tool_choice: { type: e.toolChoice || 'any' },
  };
}

// -------------------------------------------------------------- results

function chatToolCalls(message) {
  return (message?.tool_calls ?? []).map((tc) => ({
    id: tc?.id ?? null,
    type: tc?.type ?? null,
    name: tc?.function?.name ?? null,
    arguments: tc?.function?.arguments ?? null,
  }));
}

function messageText(msg) {
  const blocks = Array.isArray(msg?.content) ? msg.content : [];
  return blocks
    .filter((b) => b?.type === 'text')
    .map((b) => b.text)
    .join('');
}

function contentTypes(msg) {
  return Array.isArray(msg?.content) ? msg.content.map((b) => b?.type ?? null) : null;
}

function toolUses(msg) {
  const blocks = Array.isArray(msg?.content) ? msg.content : [];
  return blocks
    .filter((b) => b?.type === 'tool_use')
    .map((b) => ({ id: b.id ?? null, name: b.name ?? null, input: b.input ?? null }));
}

/** The anthropic-messages fields of a Message. */
function messageFields(msg) {
  return {
    id: msg?.id ?? null,
    type: msg?.type ?? null,
    role: msg?.role ?? null,
    model: msg?.model ?? null,
    text: messageText(msg),
    content_types: contentTypes(msg),
    stop_reason: msg?.stop_reason ?? null,
    stop_sequence: msg?.stop_sequence ?? null,
    usage: msg?.usage ?? null,
    request_id: msg?._request_id ?? null,
  };
}

/**
 * Streams with messages.stream(); returns the final message and event facts.
 * `sink` gets {events, sequence} as they come, so a stream that fails midway
 * still shows what arrived.
 */
async function anthropicStream(client, params, sink) {
  const stream = client.messages.stream(params);
  const types = [];
  for await (const ev of stream) {
    types.push(ev?.type);
    Object.assign(sink, { events: types.length, sequence: collapse(types) });
  }
  const msg = await stream.finalMessage();
  return { msg, events: types.length, sequence: collapse(types) };
}

function lastAuth() {
  return http.length ? http[http.length - 1].auth : null;
}

// ------------------------------------------------------------- scenarios

async function anthropicMessages(e, client, out) {
  const msg = await sdk('create', () => client.messages.create(anthropicHello(e)));
  Object.assign(out, messageFields(msg), { auth: lastAuth() });
}

const SCENARIOS = {
  'openai-chat': async (e, out) => {
    const c = await sdk('create', () =>
      openai(e).chat.completions.create({ model: e.model, messages: HELLO }),
    );
    const choice = c?.choices?.[0];
    Object.assign(out, {
      id: c?.id ?? null,
      object: c?.object ?? null,
      model: c?.model ?? null,
      role: choice?.message?.role ?? null,
      content: choice?.message?.content ?? null,
      finish_reason: choice?.finish_reason ?? null,
      usage: c?.usage ?? null,
      request_id: c?._request_id ?? null,
    });
  },

  'openai-stream': async (e, out) => {
    const client = openai(e);
    const params = {
      model: e.model,
      messages: HELLO,
      stream_options: { include_usage: true },
    };
    await sdk('stream', async () => {
      const stream = await client.chat.completions.create({ ...params, stream: true });
      let text = '';
      let chunks = 0;
      let role = null;
      let finish = null;
      let usage = null;
      for await (const chunk of stream) {
        chunks += 1;
        for (const ch of chunk?.choices ?? []) {
          if (typeof ch?.delta?.content === 'string') text += ch.delta.content;
          if (role === null && ch?.delta?.role) role = ch.delta.role;
          if (ch?.finish_reason) finish = ch.finish_reason;
        }
        if (chunk?.usage) usage = chunk.usage;
        // Recorded as it goes, so a stream that fails midway still shows what came.
        Object.assign(out, { text, chunks, role, finish_reason: finish, usage });
      }
      Object.assign(out, { text, chunks, role, finish_reason: finish, usage });
    });
    const final = await sdk('final', () =>
      client.chat.completions.stream(params).finalChatCompletion(),
    );
    const choice = final?.choices?.[0];
    out.final = {
      content: choice?.message?.content ?? null,
      finish_reason: choice?.finish_reason ?? null,
      usage: final?.usage ?? null,
    };
  },

  'openai-tools': async (e, out) => {
    const client = openai(e);
    const params = {
      model: e.model,
      messages: [{ role: 'user', content: "What's the weather in Paris?" }],
      tools: [OPENAI_TOOL],
      tool_choice: e.toolChoice || 'required',
    };
    const c = await sdk('create', () => client.chat.completions.create(params));
    const choice = c?.choices?.[0];
    Object.assign(out, {
      tool_calls: chatToolCalls(choice?.message),
      finish_reason: choice?.finish_reason ?? null,
      content: choice?.message?.content ?? null,
    });
    const f = await sdk('stream', () =>
      client.chat.completions
        .stream({ ...params, stream_options: { include_usage: true } })
        .finalChatCompletion(),
    );
    const fchoice = f?.choices?.[0];
    out.stream = {
      tool_calls: chatToolCalls(fchoice?.message),
      finish_reason: fchoice?.finish_reason ?? null,
      content: fchoice?.message?.content ?? null,
    };
  },

  'openai-error': async (e, out) => {
    const c = await sdk('create', () =>
      openai(e).chat.completions.create({ model: e.model, messages: HELLO }),
    );
    Object.assign(out, {
      content: c?.choices?.[0]?.message?.content ?? null,
      finish_reason: c?.choices?.[0]?.finish_reason ?? null,
    });
  },

  'openai-models': async (e, out) => {
    const models = await sdk('list', async () => {
      const all = [];
      for await (const m of openai(e).models.list()) {
        all.push(m);
        if (all.length >= 10_000) break;
      }
      return all;
    });
    Object.assign(out, { ids: models.map((m) => m?.id ?? null), first: models[0] ?? null });
  },

  'openai-embeddings': async (e, out) => {
    const r = await sdk('create', () =>
      openai(e).embeddings.create({ model: e.model, input: ['a', 'b'] }),
    );
    const data = Array.isArray(r?.data) ? r.data : [];
    Object.assign(out, {
      count: data.length,
      dims: data[0]?.embedding?.length ?? null,
      usage: r?.usage ?? null,
      model: r?.model ?? null,
    });
  },

  'anthropic-messages': async (e, out) => anthropicMessages(e, anthropicBearer(e), out),

  'anthropic-x-api-key': async (e, out) => anthropicMessages(e, anthropicXApiKey(e), out),

  'anthropic-stream': async (e, out) => {
    const client = anthropicBearer(e);
    const { msg, events, sequence } = await sdk('stream', () =>
      anthropicStream(client, anthropicHello(e), out),
    );
    Object.assign(out, {
      id: msg?.id ?? null,
      model: msg?.model ?? null,
      text: messageText(msg),
      content_types: contentTypes(msg),
      stop_reason: msg?.stop_reason ?? null,
      usage: msg?.usage ?? null,
      events,
      sequence,
    });
  },

  'anthropic-tools': async (e, out) => {
    const client = anthropicBearer(e);
    const params = anthropicTools(e);
    const msg = await sdk('create', () => client.messages.create(params));
    Object.assign(out, {
      tool_use: toolUses(msg),
      stop_reason: msg?.stop_reason ?? null,
      text: messageText(msg),
      content_types: contentTypes(msg),
    });
    out.stream = {};
    const s = await sdk('stream', () => anthropicStream(client, params, out.stream));
    out.stream = {
      tool_use: toolUses(s.msg),
      stop_reason: s.msg?.stop_reason ?? null,
      text: messageText(s.msg),
      content_types: contentTypes(s.msg),
      events: s.events,
      sequence: s.sequence,
    };
  },

  'anthropic-error': async (e, out) => {
    const msg = await sdk('create', () => anthropicBearer(e).messages.create(anthropicHello(e)));
    Object.assign(out, { text: messageText(msg), stop_reason: msg?.stop_reason ?? null });
  },

  'anthropic-models': async (e, out) => {
    const MAX_PAGES = 20;
    const { ids, pages, truncated, first } = await sdk('list', async () => {
      let page = await anthropicBearer(e).models.list();
      const ids = [];
      let pages = 0;
      let first = null;
      for (;;) {
        pages += 1;
        for (const m of page?.data ?? []) {
          if (first === null) first = m;
          ids.push(m?.id ?? null);
        }
        if (!page.hasNextPage()) return { ids, pages, truncated: false, first };
        if (pages >= MAX_PAGES) return { ids, pages, truncated: true, first };
        page = await page.getNextPage();
      }
    });
    Object.assign(out, { ids, pages, truncated, first });
  },
};

// ------------------------------------------------------------------ main

function emit(out, code) {
  out.http = http;
  process.stdout.write(`${JSON.stringify(out)}\n`, () => process.exit(code));
}

async function main() {
  const scenario = process.argv[2];
  const out = { scenario: scenario ?? null, ok: true };
  try {
    if (!scenario || !Object.hasOwn(SCENARIOS, scenario)) usage(`unknown scenario: ${scenario}`);
    const e = env();
    await SCENARIOS[scenario](e, out);
    emit(out, 0);
  } catch (err) {
    if (err instanceof ApiFailure) {
      Object.assign(out, { ok: false, step: err.step }, errorFields(err.cause));
      emit(out, 0);
      return;
    }
    process.stderr.write(`run.mjs: ${err instanceof HarnessError ? err.message : (err?.stack ?? err)}\n`);
    Object.assign(out, { ok: false, harness_error: String(err?.message ?? err) });
    emit(out, 1);
  }
}

main();
