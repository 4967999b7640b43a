// MQTT.js 5 as a peer of the hub (test_hub_mqttjs.py). One 5.0 connection:
//   node peer.js URL USER PASS FILTER EXPECT [TOPIC COUNT]
// subscribes to FILTER at QoS 2, prints {"event":"ready"}, publishes COUNT QoS 2 messages to
// TOPIC with 5.0 properties, prints each message received as a JSON line and exits 0 after
// EXPECT of them (1 after 15 s without them).
'use strict';
const mqtt = require('mqtt');

const [url, username, password, filter, expect, topic, count] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
// PEER_ALIAS_MAX: accept that many topic aliases from the hub (MQTT.js resolves them).
const aliasMax = Number(process.env.PEER_ALIAS_MAX || 0);
const c = mqtt.connect(url, {protocolVersion: 5, username, password, clean: true,
                             clientId: 'mqttjs-' + process.pid, reconnectPeriod: 0,
                             properties: aliasMax ? {topicAliasMaximum: aliasMax} : {}});
let got = 0;
setTimeout(() => { out({event: 'timeout', got}); process.exit(1); }, 15000);
c.on('error', (e) => { out({event: 'error', message: String(e)}); process.exit(1); });
c.on('message', (t, payload, p) => {
  const pr = p.properties || {};
  out({event: 'message', topic: t, payload: payload.toString(), qos: p.qos,
       userProperties: pr.userProperties || null, contentType: pr.contentType || null,
       responseTopic: pr.responseTopic || null,
       correlationData: pr.correlationData ? pr.correlationData.toString() : null,
       topicAlias: pr.topicAlias || null});
  if (++got >= Number(expect)) c.end(false, {}, () => process.exit(0));
});
c.on('connect', () => {
  c.subscribe(filter, {qos: 2}, (err, granted) => {
    if (err) { out({event: 'error', message: String(err)}); process.exit(1); }
    out({event: 'ready', granted: granted.map((g) => g.qos)});
    for (let i = 0; i < Number(count || 0); i++) {
      c.publish(topic, 'js' + i, {qos: 2, properties: {
        userProperties: {origin: 'mqttjs', n: String(i)}, contentType: 'text/plain',
        responseTopic: 'js/reply', correlationData: Buffer.from('corr' + i)}});
    }
  });
});
