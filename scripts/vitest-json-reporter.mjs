// vitest's JSON reporter (written where --outputFile.json says), plus what its report leaves out and the
// test command's closing line (scripts/test-summary.mjs) needs: the errors no test owns. An unhandled
// rejection, a worker that died or stopped answering, a global setup or teardown that threw: each fails
// the run though every test passed. So does a run that was interrupted.
import { JsonReporter } from 'vitest/reporters';

const firstLine = (error) => `${error?.name ?? 'Error'}: ${String(error?.message ?? error).split('\n')[0]}`;

export default class JsonReporterWithRunErrors extends JsonReporter {
  #runErrors = [];

  async onFinished(files, errors, coverageMap) {
    this.#runErrors = (errors ?? []).map(firstLine);
    if (this.ctx.isCancelling) this.#runErrors.push('the run was interrupted');
    await super.onFinished(files, errors, coverageMap);
  }

  async writeReport(report) {
    await super.writeReport(JSON.stringify({ ...JSON.parse(report), runErrors: this.#runErrors }));
  }
}
