// A Node client of berthd, as a user would write it (run by tests/clients.rs).
//
// Usage: node client.js SOCKET PROTO_DIR ARCHIVE REFERENCE
//
// Loads the .proto files at run time (@grpc/proto-loader), then, on the
// target "unix://SOCKET" with no options: calls Agent.Info, imports the image
// ARCHIVE as REFERENCE, creates, starts and waits for a container, reads its
// logs, replays its events with resume, and reads the details of an error.
// Exits non-zero on any mismatch.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const [socket, protoDir, archive, reference] = process.argv.slice(2);

function check(cond, what) {
  if (!cond) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

const files = fs.readdirSync(path.join(protoDir, 'berth/v1'))
  .filter((f) => f.endsWith('.proto'))
  .map((f) => `berth/v1/${f}`);
const def = protoLoader.loadSync(files, {
  includeDirs: [protoDir],
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});
const berth = grpc.loadPackageDefinition(def).berth.v1;

const target = `unix://${socket}`;
const creds = grpc.credentials.createInsecure();
const agent = new berth.Agent(target, creds);
const images = new berth.Images(target, creds);
const containers = new berth.Containers(target, creds);
const events = new berth.Events(target, creds);

const call = (client, method, req) => new Promise((resolve, reject) => {
  client[method](req, (err, resp) => (err ? reject(err) : resolve(resp)));
});

// Collects a server stream's messages until `stop` says so or it ends.
const collect = (stream, stop = () => false) => new Promise((resolve, reject) => {
  const got = [];
  stream.on('data', (m) => {
    got.push(m);
    if (stop(m)) {
      stream.cancel();
      resolve(got);
    }
  });
  stream.on('end', () => resolve(got));
  stream.on('error', (e) => (e.code === grpc.status.CANCELLED ? resolve(got) : reject(e)));
});

// google.rpc.Status and ErrorInfo, to read an error's details.
const rpc = protobuf.parse(`
  syntax = "proto3";
  message Any { string type_url = 1; bytes value = 2; }
  message Status { int32 code = 1; string message = 2; repeated Any details = 3; }
  message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
`).root;

async function main() {
  const info = await call(agent, 'Info', {});
  check(info.version !== '', `Info: version ${info.version}`);

  const imported = await new Promise((resolve, reject) => {
    const up = images.Import((err, resp) => (err ? reject(err) : resolve(resp)));
    up.write({ options: { reference } });
    const data = fs.readFileSync(archive);
    for (let i = 0; i < data.length; i += 256 * 1024) {
      up.write({ chunk: data.subarray(i, i + 256 * 1024) });
    }
    up.end();
  });
  check(imported.images.length === 1 && imported.images[0].id.startsWith('sha256:'), 'Import');
  const listed = await call(images, 'List', {});
  check(listed.images.some((i) => i.id === imported.images[0].id), 'images List shows it');

  const spec = { image: reference, command: ['sh', '-c', 'echo hi from node; exit 3'] };
  const c = (await call(containers, 'Create', { spec })).container;
  await call(containers, 'Start', { id: c.id });
  const waited = await call(containers, 'Wait', { id: c.id });
  check(waited.exit.exit_code === 3, `Create, Start, Wait: exit code ${waited.exit.exit_code}`);

  const logs = await collect(containers.Logs({ id: c.id, follow: true }));
  const out = Buffer.concat(logs.map((e) => e.data)).toString();
  check(out === 'hi from node\n', `Logs: ${JSON.stringify(out)}`);

  const seen = await collect(
    events.Subscribe({ containers: [c.id], from_seq: 1 }),
    (e) => e.action === 'EVENT_ACTION_EXITED',
  );
  const actions = seen.map((e) => e.action);
  check(
    actions.join() === 'EVENT_ACTION_CREATED,EVENT_ACTION_STARTED,EVENT_ACTION_EXITED'
      && seen[2].exit.exit_code === 3,
    `Subscribe from_seq=1: ${actions}`,
  );
  // Resume after the first event, as a reconnecting subscriber does.
  const resumed = await collect(
    events.Subscribe({ containers: [c.id], from_seq: seen[0].seq + 1 }),
    () => true,
  );
  check(
    resumed[0].seq === seen[1].seq && resumed[0].action === 'EVENT_ACTION_STARTED',
    `Subscribe resumes at seq ${resumed[0].seq}`,
  );

  await call(containers, 'Remove', { id: c.id });
  try {
    await call(containers, 'Inspect', { id: c.id });
    check(false, 'Inspect of a removed container fails');
  } catch (err) {
    const raw = err.metadata.get('grpc-status-details-bin')[0];
    const status = rpc.lookupType('Status').decode(raw);
    const reasons = status.details
      .filter((d) => d.typeUrl.endsWith('/google.rpc.ErrorInfo'))
      .map((d) => rpc.lookupType('ErrorInfo').decode(d.value))
      .map((i) => `${i.domain}/${i.reason}`);
    check(
      err.code === grpc.status.NOT_FOUND && reasons.includes('berth.dev/CONTAINER_NOT_FOUND'),
      `error details: ${err.code} ${reasons}`,
    );
  }
  for (const client of [agent, images, containers, events]) client.close();
  console.log('node client: all passed');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
