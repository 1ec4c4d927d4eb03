export { type InstrumentOptions, type Instrumentation, instrument } from './instrument.js';
export { attributeNames, bucketBoundariesMs, metricNames, spanNames } from './names.js';
