// A second index.js in another codedir: both must load under the same file name.
exports.handler = (event, context, callback) => callback(null, { from: 'node8-other' });
