/**
 * A coder folder as the class that runs it: SAELens folders of any architecture we load
 * (ReLU / JumpReLU / gated as ThresholdCoder, TopK as SparseCoder), sparsify folders as SparseCoder.
 */
import { DeviceError, isSaeLensDir, loadSaeLensCoder, readSaeLensConfig, SparseCoder, type Device, type ThresholdCoder } from '@sparsify/core';

export async function loadLocalCoder(dir: string, device: Device): Promise<SparseCoder | ThresholdCoder> {
  if (!isSaeLensDir(dir) || readSaeLensConfig(dir).architecture === 'topk') return SparseCoder.loadFromDisk(dir, { device });
  if (device !== 'cpu') throw new DeviceError(`${dir}: ReLU / JumpReLU / gated coders run on the CPU only`);
  return (await loadSaeLensCoder(dir)) as ThresholdCoder;
}
