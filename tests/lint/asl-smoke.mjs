// Behavioural smoke test of statemachine/sso-fanout.asl.json, run by tests/lint/run.sh.
//
// Runs the real definition in aws-local-stepfunctions (a local ASL interpreter) with the three
// Lambda tasks replaced by local stubs that follow the fixed I/O contracts, and checks the data
// flow and error handling: dry run, Map items, failed-batch records, retries, InvalidRequest.
// No AWS calls. Retry waits are overridden to 0 ms.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// aws-local-stepfunctions targets Node 22; Node 20 lacks Promise.withResolvers.
if (!Promise.withResolvers) {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
const { StateMachine } = await import('aws-local-stepfunctions');

const aslPath = fileURLToPath(new URL('../../statemachine/sso-fanout.asl.json', import.meta.url));
const definition = JSON.parse(readFileSync(aslPath, 'utf8'));
const machine = new StateMachine(definition, { validationOptions: { checkArn: false } });

// A Lambda function error as Step Functions sees it: Error = errorType.
class LambdaError extends Error {
  constructor(errorType, errorMessage) {
    super(JSON.stringify({ errorType, errorMessage }));
    this.name = errorType;
  }
}

const request = {
  operation: 'assign',
  permissionSet: 'AdministratorAccess',
  principal: { type: 'GROUP', name: 'PlatformAdmins' },
  targets: { filter: 'prod-*' },
};
const planFor = ({ dryRun = false, batches = 5, mapConcurrency = 2 } = {}) => ({
  runId: 'run-1',
  dryRun,
  mapConcurrency,
  batches: Array.from({ length: batches }, (_, batch) => ({ runId: 'run-1', batch, accounts: 3 })),
  estimateSeconds: 12.5,
  plan: { operation: 'assign', accounts: batches * 3, toChange: batches * 3 },
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function stubs({ plan = planFor(), failBatches = [], plannerError = null } = {}) {
  const calls = { plan: [], work: [], report: [], inFlight: 0, maxInFlight: 0 };
  const handlers = {
    Plan: (input) => {
      calls.plan.push(input);
      if (plannerError) throw new LambdaError(...plannerError);
      return { StatusCode: 200, Payload: plan };
    },
    Work: async (input) => {
      calls.work.push(input);
      calls.inFlight += 1;
      calls.maxInFlight = Math.max(calls.maxInFlight, calls.inFlight);
      await sleep(5);
      calls.inFlight -= 1;
      const { runId, batch } = input.Payload;
      if (failBatches.includes(batch)) throw new LambdaError('AccessDenied', `batch ${batch} denied`);
      return { StatusCode: 200, Payload: { runId, batch, succeeded: 3, failed: 0, skipped: 0, timedOut: 0 } };
    },
    Report: (input) => {
      calls.report.push(input);
      return { StatusCode: 200, Payload: { runId: input.Payload.runId, summary: true, batches: input.Payload.batches } };
    },
  };
  return { calls, handlers };
}

const run = (handlers) =>
  machine.run(request, {
    overrides: { taskResourceLocalHandlers: handlers, retryIntervalOverrides: { Plan: 0, Work: 0, Report: 0 } },
  }).result;

const results = [];
async function test(name, fn) {
  try {
    await fn();
    results.push(true);
    console.log(`ok   ${name}`);
  } catch (err) {
    results.push(false);
    console.log(`FAIL ${name}\n     ${String(err && err.stack ? err.stack : err).split('\n').join('\n     ')}`);
  }
}

await test('dry run returns the plan preview and runs no worker', async () => {
  const plan = planFor({ dryRun: true });
  const { calls, handlers } = stubs({ plan });
  const out = await run(handlers);
  assert.deepEqual(out, plan.plan);
  assert.equal(calls.work.length, 0);
  assert.equal(calls.report.length, 0);
});

await test('planner gets the request; each worker gets {runId, batch}; reporter output is the result', async () => {
  const { calls, handlers } = stubs();
  const out = await run(handlers);
  assert.equal(calls.plan.length, 1);
  assert.deepEqual(calls.plan[0].Payload, request);
  assert.equal(calls.plan[0].FunctionName, '${PlannerFunctionArn}');
  assert.deepEqual(
    calls.work.map((c) => c.Payload).sort((a, b) => a.batch - b.batch),
    [0, 1, 2, 3, 4].map((batch) => ({ runId: 'run-1', batch })),
  );
  assert.equal(calls.report.length, 1);
  assert.equal(calls.report[0].Payload.runId, 'run-1');
  assert.equal(calls.report[0].Payload.batches.length, 5);
  assert.equal(out.summary, true);
  assert.deepEqual(out.batches[2], { runId: 'run-1', batch: 2, succeeded: 3, failed: 0, skipped: 0, timedOut: 0 });
});

await test('Map honours mapConcurrency from the plan', async () => {
  const { calls, handlers } = stubs({ plan: planFor({ batches: 6, mapConcurrency: 2 }) });
  await run(handlers);
  assert.equal(calls.work.length, 6);
  assert.equal(calls.maxInFlight, 2, `max in flight ${calls.maxInFlight}`);
});

await test('a failed batch becomes {runId, batch, error:{Error, Cause}} and the run still reports', async () => {
  const { calls, handlers } = stubs({ failBatches: [1] });
  const out = await run(handlers);
  assert.equal(calls.report.length, 1);
  const failed = out.batches.find((b) => b.batch === 1);
  assert.deepEqual(Object.keys(failed).sort(), ['batch', 'error', 'runId']);
  assert.equal(failed.error.Error, 'AccessDenied');
  assert.match(failed.error.Cause, /batch 1 denied/);
  // AccessDenied is not retryable: one attempt only.
  assert.equal(calls.work.filter((c) => c.Payload.batch === 1).length, 1);
});

await test('worker Throttled/Retryable/StoreError errors are retried', async () => {
  const { calls, handlers } = stubs();
  const work = handlers.Work;
  const errors = ['Throttled', 'Retryable', 'StoreError'];
  let attempts = 0;
  handlers.Work = (input) => {
    if (input.Payload.batch === 0 && attempts < errors.length) throw new LambdaError(errors[attempts++], 'later');
    if (input.Payload.batch === 0) attempts++;
    return work(input);
  };
  const out = await run(handlers);
  assert.equal(attempts, 4);
  assert.ok(out.batches.every((b) => !b.error));
  assert.equal(calls.report.length, 1);
});

await test('Lambda service errors on the reporter are retried', async () => {
  const { handlers } = stubs();
  const report = handlers.Report;
  let attempts = 0;
  handlers.Report = (input) => {
    if (attempts++ < 2) throw new LambdaError('Lambda.TooManyRequestsException', 'Rate exceeded');
    return report(input);
  };
  const out = await run(handlers);
  assert.equal(attempts, 3);
  assert.equal(out.summary, true);
});

await test('InvalidRequest fails the execution with the planner error, without retry', async () => {
  const { calls, handlers } = stubs({ plannerError: ['InvalidRequest', 'targets: nothing selected'] });
  await assert.rejects(run(handlers), (err) => {
    assert.equal(err.cause && err.cause.name, 'InvalidRequest');
    assert.match(err.message, /targets: nothing selected/);
    return true;
  });
  assert.equal(calls.plan.length, 1);
  assert.equal(calls.work.length, 0);
});

await test('planner Retryable is retried, then the execution fails with it', async () => {
  const { calls, handlers } = stubs({ plannerError: ['Retryable', 'Organizations busy'] });
  await assert.rejects(run(handlers), (err) => err.cause && err.cause.name === 'Retryable');
  assert.equal(calls.plan.length, 5); // 1 + MaxAttempts 4
});

const passed = results.filter(Boolean).length;
const failed = results.length - passed;
console.log(`asl-smoke: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
