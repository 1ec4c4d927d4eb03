export { createRedlockProvider, type RedlockProviderOptions } from './provider.js';
export { redlockCapabilities } from './capabilities.js';
export { dlockBackend } from './descriptor.js';
export { redlockPermitCapabilities } from './permits.js';
