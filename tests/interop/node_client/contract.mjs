// A channel system written from proto/anstoss/v1/decision.proto alone: it drives a running
// `anstoss serve` and checks what the .proto's comments promise.
//
//   node contract.mjs HOST:PORT [SCENARIO ...]
//   node contract.mjs --list
//
// Runs every scenario, or the named ones (e.g. `b.request_ids`, or just `b`; the catalog of
// scenario a is always read first). Prints one JSON line per check ({"scenario", "check", "ok",
// ...}) and exits 1 at the first failed check, 2 on a usage error. Customer ids carry a per-run
// tag, so the script can run again against the same server; every time lies in March 2026, in
// the past, so the live-mode time guard accepts it.

import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import { VERSIONS, listServices } from './reflection.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PROTO_ROOT = path.resolve(HERE, '../../../proto');
const DEADLINE_MS = 10_000;

const DAY = 86_400;
const T0 = Date.parse('2026-03-02T08:00:00Z') / 1000;
const RUN = `interop-${Date.now().toString(36)}-${process.pid}`;

// -- reporting ---------------------------------------------------------------------------------

/** A failed check, with what its JSON line should say. */
class CheckFailed extends Error {
  constructor(name, detail) {
    super(`${scenario}: ${name}`);
    this.line = { scenario, check: name, ...detail };
  }
}

let scenario = '-';
let passed = 0;

function emit(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

/** One check: prints its line, or throws so main() can print the failure and stop. */
function check(name, condition, detail = {}) {
  if (!condition) {
    throw new CheckFailed(name, detail);
  }
  passed += 1;
  emit({ scenario, check: name, ok: true, ...detail });
}

function info(name, detail) {
  emit({ scenario, check: name, ok: true, info: true, ...detail });
}

// -- the service -------------------------------------------------------------------------------

function loadService() {
  const definition = protoLoader.loadSync('anstoss/v1/decision.proto', {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [PROTO_ROOT], // google/protobuf/timestamp.proto comes with protobufjs
  });
  return grpc.loadPackageDefinition(definition).anstoss.v1.DecisionService;
}

/** Promise wrappers over the unary methods; a failed call rejects with the grpc-js error. */
function unary(client) {
  const call = (method) => (request) =>
    new Promise((resolve, reject) => {
      client[method](request, { deadline: Date.now() + DEADLINE_MS }, (err, reply) =>
        err ? reject(err) : resolve(reply),
      );
    });
  return {
    decide: call('Decide'),
    reportEvent: call('ReportEvent'),
    getDecision: call('GetDecision'),
    getCatalog: call('GetCatalog'),
  };
}

/** The status of a call that must fail: {code, details}; a call that succeeds fails the check. */
async function failure(name, promise) {
  try {
    const reply = await promise;
    throw new CheckFailed(name, { error: 'the call succeeded', reply });
  } catch (err) {
    if (err instanceof CheckFailed) throw err;
    if (typeof err.code !== 'number') throw err;
    return { code: err.code, details: err.details ?? '' };
  }
}

function statusName(code) {
  return Object.keys(grpc.status).find((k) => grpc.status[k] === code) ?? String(code);
}

function expectStatus(name, got, code, detailsTest = () => true) {
  check(name, got.code === code && detailsTest(got.details), {
    expected: statusName(code),
    got: statusName(got.code),
    details: got.details,
  });
}

// -- messages ----------------------------------------------------------------------------------

const ts = (seconds, nanos = 0) => ({ seconds: String(seconds), nanos });
const secondsOf = (stamp) => (stamp === null ? null : Number(stamp.seconds));
const customer = (name) => `${RUN}-${name}`;
const actionKey = (a) => `${a.touchpoint}@${a.channel}`;

function event(customerId, time, type, extra = {}) {
  return { event: { customer_id: customerId, time: ts(time), type, ...extra } };
}

function purchase(customerId, time, value, eventId = '') {
  return event(customerId, time, 'EVENT_TYPE_PURCHASE', { value, event_id: eventId });
}

/** Decide for a customer on day 1 after her first purchase, where the chain contacts her. */
async function contactDecision(api, catalog, customerId, extra = {}) {
  await api.reportEvent(purchase(customerId, T0, 40.0));
  const { decision } = await api.decide({ customer_id: customerId, time: ts(T0 + DAY), ...extra });
  const chosen = decision.eligible.find((e) => actionKey(e.action) === actionKey(decision.action));
  check('day-1 decision contacts the customer', !decision.no_contact && chosen !== undefined, {
    action: actionKey(decision.action),
    day1_step: catalog.day1,
    removed: decision.removed.map((r) => `${actionKey(r.action)}:${r.rule}`),
  });
  return decision;
}

// -- scenarios ---------------------------------------------------------------------------------

async function getCatalog(api) {
  const c = await api.getCatalog({});
  const { limits, rewards, time } = c;
  check('limits present', limits !== null);
  const positiveInts = [
    'max_batch', 'max_events', 'max_id_length', 'max_features', 'max_feature_name_length',
    'max_feature_value_length', 'max_candidates', 'max_streams', 'max_streams_per_connection',
    'max_calls_per_connection', 'max_concurrent_rpcs',
  ];
  for (const name of positiveInts) {
    const value = limits[name];
    check(`limits.${name} is a positive integer`, Number.isInteger(value) && value > 0, { value });
  }
  const messageBytes = Number(limits.max_message_bytes); // int64: a string with longs: String
  check('limits.max_message_bytes positive',
    Number.isSafeInteger(messageBytes) && messageBytes > 0, { value: limits.max_message_bytes },
  );
  // The Conventions give these numbers.
  check('limits.max_value is 1e6', limits.max_value === 1e6, { value: limits.max_value });
  check('limits.max_abs_reward is 1e4', limits.max_abs_reward === 1e4, {
    value: limits.max_abs_reward,
  });
  check('limits.max_abs_feature is 1e6', limits.max_abs_feature === 1e6, {
    value: limits.max_abs_feature,
  });
  check('limits.stream_idle_seconds is 30', limits.stream_idle_seconds === 30, {
    value: limits.stream_idle_seconds,
  });
  check('limits.max_streams_per_connection <= max_streams',
    limits.max_streams_per_connection <= limits.max_streams, {
      per_connection: limits.max_streams_per_connection, total: limits.max_streams,
    });

  check('rewards present', rewards !== null);
  check('rewards.attribution_window_days > 0 and equal to attribution_window_days',
    rewards.attribution_window_days > 0 &&
      rewards.attribution_window_days === c.attribution_window_days, {
      rewards: rewards.attribution_window_days, top_level: c.attribution_window_days,
    });
  check('rewards.allowed_lateness_hours >= 0', rewards.allowed_lateness_hours >= 0, {
    value: rewards.allowed_lateness_hours,
  });
  check('rewards.margin_rate in (0, 1]', rewards.margin_rate > 0 && rewards.margin_rate <= 1, {
    value: rewards.margin_rate,
  });
  check('rewards.no_outcome_reward finite', Number.isFinite(rewards.no_outcome_reward), {
    value: rewards.no_outcome_reward,
  });
  check('rewards.unsubscribe_penalty >= 0', rewards.unsubscribe_penalty >= 0, {
    value: rewards.unsubscribe_penalty,
  });

  check('time present', time !== null);
  check('time.mode is live (the default)', time.mode === 'live', { value: time.mode });
  check('time.max_ahead_seconds is 600', time.max_ahead_seconds === 600, {
    value: time.max_ahead_seconds,
  });
  const earliest = secondsOf(time.earliest);
  check('time.earliest is 2000-01-01T00:00:00Z',
    earliest === Date.parse('2000-01-01T00:00:00Z') / 1000 && time.earliest.nanos === 0, {
      value: time.earliest,
    });
  const latest = secondsOf(time.latest_window_end);
  check('time.latest_window_end in the future and by 9999-12-31',
    latest > Date.now() / 1000 && latest <= Date.parse('9999-12-31T23:59:59Z') / 1000, {
      value: time.latest_window_end,
    });
  let zoneValid = false;
  try {
    new Intl.DateTimeFormat('en', { timeZone: time.zone });
    zoneValid = time.zone !== '';
  } catch {
    zoneValid = false;
  }
  check('time.zone is an IANA time zone', zoneValid, { value: time.zone });
  check('time.lifecycle_days is calendar or elapsed',
    ['calendar', 'elapsed'].includes(time.lifecycle_days), { value: time.lifecycle_days },
  );
  check('chain_catch_up_days is a non-negative integer',
    Number.isInteger(c.chain_catch_up_days) && c.chain_catch_up_days >= 0, {
      value: c.chain_catch_up_days,
    });

  const channels = new Set(c.channels.map((ch) => ch.name));
  const touchpoints = new Set(c.touchpoints.map((t) => t.name));
  check('channels and touchpoints listed', channels.size > 0 && touchpoints.size > 0, {
    channels: [...channels], touchpoints: [...touchpoints],
  });
  const noContact = c.actions.filter((a) => a.action.touchpoint === '' && a.action.channel === '');
  check('actions include "no contact" at cost 0',
    noContact.length === 1 && noContact[0].cost === 0, { found: noContact },
  );
  const strays = c.actions
    .filter((a) => a !== noContact[0])
    .filter((a) => !touchpoints.has(a.action.touchpoint) || !channels.has(a.action.channel));
  check('every action is a catalog touchpoint over a catalog channel', strays.length === 0, {
    strays: strays.map((a) => actionKey(a.action)),
  });
  const badSteps = c.chain.filter(
    (s) => !touchpoints.has(s.touchpoint) || s.channels.some((ch) => !channels.has(ch)),
  );
  check('chain steps name catalog touchpoints and channels', badSteps.length === 0, {
    bad: badSteps,
  });
  const shares = c.arms.reduce((sum, arm) => sum + arm.share, 0);
  check('experiment named, arm shares sum to 1',
    c.experiment !== '' && c.arms.length > 0 && Math.abs(shares - 1) < 1e-9, {
      experiment: c.experiment, arms: c.arms.map((a) => `${a.name}:${a.policy}:${a.share}`),
    });
  const day1 = c.chain.find((s) => s.day === 1);
  info('chain day-1 step', { step: day1 ?? null });

  return {
    limits,
    emailActions: c.actions
      .filter((a) => a.action.channel === 'email')
      .map((a) => actionKey(a.action)),
    day1: day1 ? `${day1.touchpoint}@${day1.channels.join('|')}` : null,
  };
}

async function requestIds(api) {
  const who = customer('request-ids');
  const first = await api.reportEvent(purchase(who, T0, 59.9, 'order-1'));
  check('first purchase applied', first.duplicate === false, { reply: first });
  const request = { customer_id: who, time: ts(T0 + DAY, 250_000_000), request_id: 'job-7/line-1' };
  const { decision: a } = await api.decide(request);
  check('decision logged as new', a.duplicate === false && a.decision_id !== '', {
    decision_id: a.decision_id,
  });
  check('request_id and defer_activation echoed',
    a.request_id === 'job-7/line-1' && a.defer_activation === false, {
      request_id: a.request_id, defer_activation: a.defer_activation,
    });
  check('time kept in whole seconds (nanos dropped)',
    secondsOf(a.time) === T0 + DAY && a.time.nanos === 0, { time: a.time },
  );
  const total = a.eligible.reduce((sum, e) => sum + e.probability, 0);
  check('eligible probabilities sum to 1', Math.abs(total - 1) < 1e-9, { sum: total });
  check('attribution window ends after the decision',
    secondsOf(a.attribution_window_end) > secondsOf(a.time), {
      end: a.attribution_window_end,
    });

  const { decision: b } = await api.decide(request);
  check('identical retry returns the same decision, duplicate set',
    b.decision_id === a.decision_id && b.duplicate === true &&
      actionKey(b.action) === actionKey(a.action) && secondsOf(b.time) === secondsOf(a.time), {
      first: a.decision_id, retry: b.decision_id, duplicate: b.duplicate,
    });

  const moved = await failure(
    'same request_id, other time',
    api.decide({ ...request, time: ts(T0 + DAY + 60) }),
  );
  expectStatus('same request_id with another time is ALREADY_EXISTS', moved,
    grpc.status.ALREADY_EXISTS,
  );

  // Decision.customer_known: false only when no first purchase is known at the decision's time.
  check('customer_known set a day after her first purchase', a.customer_known === true, {
    customer_known: a.customer_known,
  });
}

async function deferredActivation(api, catalog) {
  const who = customer('deferred');
  const d = await contactDecision(api, catalog, who, { defer_activation: true });
  check('defer_activation echoed', d.defer_activation === true);
  const pending = await api.getDecision({ decision_id: d.decision_id });
  check('GetDecision: ACTIVATION_PENDING, no delivered_time',
    pending.activation === 'ACTIVATION_PENDING' && pending.delivered_time === null, {
      activation: pending.activation, delivered_time: pending.delivered_time,
    });

  const sent = T0 + DAY + 3600;
  await api.reportEvent(event(who, sent, 'EVENT_TYPE_DELIVERED', { decision_id: d.decision_id }));
  const active = await api.getDecision({ decision_id: d.decision_id });
  check('after DELIVERED: ACTIVATION_ACTIVE with delivered_time',
    active.activation === 'ACTIVATION_ACTIVE' && secondsOf(active.delivered_time) === sent, {
      activation: active.activation, delivered_time: active.delivered_time,
    });

  const late = await failure(
    'NOT_EXECUTED after DELIVERED',
    api.reportEvent(
      event(who, sent + 3600, 'EVENT_TYPE_NOT_EXECUTED', { decision_id: d.decision_id }),
    ),
  );
  expectStatus('NOT_EXECUTED after DELIVERED is FAILED_PRECONDITION', late,
    grpc.status.FAILED_PRECONDITION,
  );
  const still = await api.getDecision({ decision_id: d.decision_id });
  check('still active, no not_executed_time',
    still.activation === 'ACTIVATION_ACTIVE' && still.not_executed_time === null, {
      activation: still.activation, not_executed_time: still.not_executed_time,
    });
}

async function deliveryChecks(api, catalog) {
  const who = customer('delivery');
  const d = await contactDecision(api, catalog, who);
  const at = secondsOf(d.time);
  const delivered = (customerId, time) =>
    api.reportEvent(
      event(customerId, time, 'EVENT_TYPE_DELIVERED', { decision_id: d.decision_id }),
    );

  const stranger = await failure(
    'DELIVERED for another customer',
    delivered(customer('stranger'), at + 60),
  );
  expectStatus('DELIVERED for another customer is INVALID_ARGUMENT on event.customer_id', stranger,
    grpc.status.INVALID_ARGUMENT, (details) => details.startsWith('event.customer_id'),
  );
  const early = await failure('DELIVERED before the decision', delivered(who, at - 60));
  expectStatus('DELIVERED before the decision is INVALID_ARGUMENT naming event.time', early,
    grpc.status.INVALID_ARGUMENT, (details) => details.includes('event.time'),
  );
  const read = await api.getDecision({ decision_id: d.decision_id });
  check('refused deliveries left no delivered_time', read.delivered_time === null, {
    delivered_time: read.delivered_time,
  });
  await delivered(who, at); // the decision's own second is not before it
  const ok = await api.getDecision({ decision_id: d.decision_id });
  check('DELIVERED in the decision second is accepted', secondsOf(ok.delivered_time) === at, {
    delivered_time: ok.delivered_time,
  });
}

async function eventIds(api) {
  const anna = customer('anna');
  const ben = customer('ben');
  const a = await api.reportEvent(purchase(anna, T0, 10.0, 'e-1'));
  const b = await api.reportEvent(purchase(ben, T0, 20.0, 'e-1'));
  check('same event_id for another customer is another event',
    a.duplicate === false && b.duplicate === false, { first: a, second: b },
  );
  const again = await api.reportEvent(purchase(anna, T0, 10.0, 'e-1'));
  check('the same event again is a duplicate', again.duplicate === true, { reply: again });
  const changed = await failure(
    'same (customer, event_id), other value',
    api.reportEvent(purchase(anna, T0, 99.0, 'e-1')),
  );
  expectStatus('same (customer, event_id) with another value is ALREADY_EXISTS', changed,
    grpc.status.ALREADY_EXISTS,
  );
}

async function unsubscribes(api, catalog) {
  const who = customer('unsubscribe');
  const emailRules = (decision) =>
    new Map(
      decision.removed
        .filter((r) => r.action.channel === 'email')
        .map((r) => [actionKey(r.action), r.rule]),
    );
  await api.reportEvent(purchase(who, T0, 50.0));
  await api.reportEvent(event(who, T0 + 3600, 'EVENT_TYPE_UNSUBSCRIBED', { channel: 'email' }));
  await api.reportEvent(event(who, T0 + 7200, 'EVENT_TYPE_CONSENT_GRANTED', { channel: 'email' }));
  const { decision: d } = await api.decide({ customer_id: who, time: ts(T0 + 2 * DAY) });
  const rules = emailRules(d);
  const notUnsubscribed = catalog.emailActions.filter(
    (key) => rules.get(key) !== 'ELIGIBILITY_RULE_UNSUBSCRIBED',
  );
  check('after UNSUBSCRIBED + CONSENT_GRANTED every email action is removed as UNSUBSCRIBED',
    catalog.emailActions.length > 0 && notUnsubscribed.length === 0 &&
      !d.eligible.some((e) => e.action.channel === 'email'), {
      email_actions: catalog.emailActions.length, not_removed_as_unsubscribed: notUnsubscribed,
    });

  await api.reportEvent(event(who, T0 + 3 * DAY, 'EVENT_TYPE_RESUBSCRIBED', { channel: 'email' }));
  const { decision: after } = await api.decide({ customer_id: who, time: ts(T0 + 4 * DAY) });
  const rulesAfter = [...emailRules(after).values()];
  check('after RESUBSCRIBED email is no longer removed as UNSUBSCRIBED (nor NO_CONSENT)',
    !rulesAfter.includes('ELIGIBILITY_RULE_UNSUBSCRIBED') &&
      !rulesAfter.includes('ELIGIBILITY_RULE_NO_CONSENT'), {
      email_rules: [...emailRules(after)].map(([k, r]) => `${k}:${r}`),
    });
}

async function decideStream(Service, address, limits) {
  const client = new Service(address, grpc.credentials.createInsecure());
  const call = client.DecideStream({ deadline: Date.now() + DEADLINE_MS });
  const status = new Promise((resolve) => call.on('status', resolve));
  const replies = call[Symbol.asyncIterator](); // rejects with the call's error if it fails
  const next = async (name) => {
    const { value, done } = await replies.next();
    if (done) {
      const { code, details } = await status;
      throw new CheckFailed(name, { error: 'stream ended', code: statusName(code), details });
    }
    return value;
  };
  const requests = (n, tag) =>
    Array.from({ length: n }, (_, i) => ({
      customer_id: customer(`stream-${tag}-${i}`),
      time: ts(T0 + DAY),
    }));
  try {
    call.write({ requests: requests(limits.max_batch + 1, 'big') });
    const big = await next('reply to the oversized batch');
    check('a batch over max_batch gets only `error` (code 8, field "requests")',
      big.error !== null && big.error.code === 8 && big.error.field === 'requests' &&
        big.results.length === 0, {
        batch: limits.max_batch + 1, error: big.error, results: big.results.length,
      });
    call.write({ requests: requests(2, 'small') });
    const small = await next('reply to the next batch');
    check('the stream goes on: the next 2 requests get 2 decisions',
      small.error === null && small.results.length === 2 &&
        small.results.every((r) => r.result === 'decision' && r.decision.decision_id !== ''), {
        results: small.results.map((r) => r.result), error: small.error,
      });
    call.end();
    const { done } = await replies.next();
    const { code, details } = await status;
    check('the stream ends OK after the client half-closes', done && code === grpc.status.OK, {
      code: statusName(code), details,
    });
  } finally {
    client.close();
  }
}

async function badInput(api, limits) {
  const unset = await failure(
    'Decide without time',
    api.decide({ customer_id: customer('no-time') }),
  );
  expectStatus('Decide with an unset time is INVALID_ARGUMENT naming `time`', unset,
    grpc.status.INVALID_ARGUMENT, (details) => /^time\b/.test(details),
  );
  const unsetEvent = await failure(
    'ReportEvent without time',
    api.reportEvent({
      event: { customer_id: customer('no-time'), type: 'EVENT_TYPE_PURCHASE', value: 1 },
    }),
  );
  expectStatus('ReportEvent with an unset time is INVALID_ARGUMENT naming `event.time`', unsetEvent,
    grpc.status.INVALID_ARGUMENT, (details) => details.startsWith('event.time'),
  );

  const longest = 'x'.repeat(limits.max_id_length);
  const fits = await api.decide({ customer_id: longest, time: ts(T0) });
  check('a customer_id of exactly max_id_length is accepted',
    fits.decision.customer_id === longest, { length: limits.max_id_length },
  );
  const over = await failure(
    'customer_id over max_id_length',
    api.decide({ customer_id: `${longest}y`, time: ts(T0) }),
  );
  expectStatus('a customer_id longer than max_id_length is RESOURCE_EXHAUSTED', over,
    grpc.status.RESOURCE_EXHAUSTED,
  );
  const huge = await failure(
    'customer_id far over max_id_length',
    api.decide({ customer_id: 'z'.repeat(limits.max_id_length * 20), time: ts(T0) }),
  );
  check('the error quotes only a few dozen characters of the input',
    huge.code === grpc.status.RESOURCE_EXHAUSTED && huge.details.length < 300, {
      code: statusName(huge.code), details_length: huge.details.length,
    });
}

async function reflection(address) {
  const answers = {};
  for (const version of VERSIONS) {
    answers[version] = await listServices(address, version, DEADLINE_MS);
  }
  const answered = VERSIONS.filter((v) => answers[v].services !== undefined);
  info('reflection versions that answered', {
    answered,
    refused: Object.fromEntries(
      VERSIONS.filter((v) => !answered.includes(v)).map((v) => [
        `grpc.reflection.${v}.ServerReflection`,
        `${statusName(answers[v].code)}: ${answers[v].details}`,
      ]),
    ),
  });
  for (const version of VERSIONS) {
    const { services, code, details } = answers[version];
    check(`grpc.reflection.${version}.ServerReflection lists anstoss.v1.DecisionService`,
      services !== undefined && services.includes('anstoss.v1.DecisionService'), {
        services: services ?? null,
        status: services === undefined ? `${statusName(code)}: ${details}` : 'OK',
      });
  }
}

// -- main --------------------------------------------------------------------------------------

// In order; each gets {api, Service, address, catalog}, the catalog read by a.
const SCENARIOS = [
  ['a.get_catalog', (ctx) => getCatalog(ctx.api)],
  ['b.request_ids', (ctx) => requestIds(ctx.api)],
  ['c.deferred_activation', (ctx) => deferredActivation(ctx.api, ctx.catalog)],
  ['d.delivery_checks', (ctx) => deliveryChecks(ctx.api, ctx.catalog)],
  ['e.event_ids', (ctx) => eventIds(ctx.api)],
  ['f.unsubscribes', (ctx) => unsubscribes(ctx.api, ctx.catalog)],
  ['g.decide_stream', (ctx) => decideStream(ctx.Service, ctx.address, ctx.catalog.limits)],
  ['h.bad_input', (ctx) => badInput(ctx.api, ctx.catalog.limits)],
  ['i.reflection', (ctx) => reflection(ctx.address)],
];

function usage(message) {
  const known = SCENARIOS.map(([name]) => name).join(', ');
  process.stderr.write(`${message}\nusage: node contract.mjs HOST:PORT [SCENARIO ...] | --list\n`);
  process.stderr.write(`scenarios: ${known}\n`);
  process.exit(2);
}

async function main() {
  const [address, ...wanted] = process.argv.slice(2);
  if (address === '--list') {
    for (const [name] of SCENARIOS) process.stdout.write(`${name}\n`);
    return;
  }
  if (!address || !/^[^:\s]+:\d+$/.test(address)) usage(`not an address: ${address ?? '(none)'}`);
  const matches = (w) => (name) => name === w || name.split('.')[0] === w;
  const unknown = wanted.filter((w) => !SCENARIOS.some(([name]) => matches(w)(name)));
  if (unknown.length > 0) usage(`unknown scenario(s): ${unknown.join(', ')}`);
  const selected = (name) => wanted.length === 0 || wanted.some((w) => matches(w)(name));

  const Service = loadService();
  const client = new Service(address, grpc.credentials.createInsecure());
  const ctx = { api: unary(client), Service, address, catalog: null };
  try {
    for (const [name, run] of SCENARIOS) {
      // Later scenarios need the catalog, so a is read whatever was asked.
      if (!selected(name) && name !== 'a.get_catalog') continue;
      scenario = name;
      const result = await run(ctx);
      if (name === 'a.get_catalog') ctx.catalog = result;
    }
  } catch (err) {
    // A call that failed where the contract says it succeeds is a failure too, with its status.
    const line =
      err instanceof CheckFailed
        ? err.line
        : {
            scenario,
            check: 'unexpected error',
            error: typeof err?.code === 'number' ? err.message : String(err?.stack ?? err),
            code: typeof err?.code === 'number' ? statusName(err.code) : null,
            details: err?.details ?? null,
          };
    emit({ ...line, ok: false });
    process.stderr.write(`FAILED ${line.scenario}: ${line.check}\n${JSON.stringify(line)}\n`);
    process.exitCode = 1;
  } finally {
    client.close();
  }
  if (process.exitCode !== 1) {
    emit({ scenario: 'summary', check: `${passed} checks passed`, ok: true, passed });
  }
}

await main();
