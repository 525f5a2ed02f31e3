export * from './top-examples.js';
export * from './interval-samples.js';
export * from './logit-effects.js';
export * from './feature-pass.js';
export * from './token-strings.js';
export * from './neuronpedia.js';
export * from './features-output.js';
