#!/usr/bin/env node

const _ = require('lodash');

exports.handler = (event, context, callback) => {
  result = {}

  //筛选数组中重复元素
  result["unique_array"] = _.uniq(event['array']);
  //排序
  result['sorted_users'] = _.sortBy(event['users'], function(o) { return o.age; });
  //过滤
  result['filtered_users'] = _.filter(event['users'], function(o) { return !o.active; });

  callback(null, result);
}
