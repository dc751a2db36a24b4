/**
 * What V8 is told about tensor memory (the external-memory total the addon's
 * AdjustExternalMemory reports add up to; Node's memoryUsage().external omits it): a view does not count its base's bytes again, and
 * tensors created inside tidy() are not reported (the scope frees them; reporting a step's
 * activations made V8 start a mark-compact in every step), except those that leave it.
 */
import { Tensor, keep, tidy, zeros } from "../../lib";
import { native } from "../../lib/binding";

const MiB = 2 ** 20;
const external = () => native.reportedExternalMemory();
/** Change of the external-memory figure across `fn`, in MiB. */
function reportedDuring<T>(fn: () => T): { value: T; mib: number } {
  const before = external();
  const value = fn();
  return { value, mib: (external() - before) / MiB };
}

describe("external memory reported to V8", () => {
  it("counts a new 16 MiB tensor once, and none of its views", () => {
    const { value: base, mib } = reportedDuring(() => zeros([1024, 4096]));
    expect(mib).toBeCloseTo(16, 0);
    const views = reportedDuring(() => [base.transpose(0, 1), base.narrow(0, 0, 512), base.reshape([4096, 1024]), base.view([-1])]);
    expect(views.mib).toBeCloseTo(0, 1);
    const disposed = reportedDuring(() => {
      views.value.forEach((v) => v.dispose());
      base.dispose();
    });
    expect(disposed.mib).toBeCloseTo(-16, 0);
  });

  it("leaves tensors made inside tidy() unreported, and reports those that outlive it (returned or kept)", () => {
    let kept!: Tensor;
    let temp!: Tensor;
    let peakInside = 0;
    const { value: out, mib } = reportedDuring(() =>
      tidy(() => {
        const start = external();
        temp = zeros([1024, 4096]).add(1); // two 16 MiB tensors, freed by the scope
        kept = keep(zeros([1024, 1024])); // 4 MiB, now the collector's: reported
        peakInside = (external() - start) / MiB;
        return zeros([512, 4096]); // 8 MiB, returned: reported when the scope ends
      }),
    );
    expect(peakInside).toBeCloseTo(4, 0);
    expect(temp.isDisposed).toBe(true);
    expect(mib).toBeCloseTo(12, 0);
    const freed = reportedDuring(() => {
      out.dispose();
      kept.dispose();
    });
    expect(freed.mib).toBeCloseTo(-12, 0);
  });

  it("reports tensors made inside a nested scope only when they leave the outermost one", () => {
    const { value, mib } = reportedDuring(() =>
      tidy(() => {
        const inner = tidy(() => zeros([1024, 1024])); // 4 MiB, returned to the outer scope
        return { inner, doubled: inner.mul(2) };
      }),
    );
    expect(mib).toBeCloseTo(8, 0);
    value.inner.dispose();
    value.doubled.dispose();
  });
});
