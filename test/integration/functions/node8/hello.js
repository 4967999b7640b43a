#!/usr/bin/env node

exports.handler = (event, context, callback) => {
  result = {};

  if (Buffer.isBuffer(event)) {
    const message = event.toString();
    result["msg"] = message;
    result["type"] = 'non-dict';
  } else {
    result["msg"] = event;
    result["type"] = 'dict';
  }

  result["say"] = 'hello world';
  callback(null, result);
};
