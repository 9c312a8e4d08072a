// AudioWorklet processor: runs on the browser's audio thread. It only copies the microphone's samples
// (mixed to mono) into ~50 ms blocks and posts them to the page, which sends them to the server:
// 128-sample render quanta would be too many tiny WebSocket messages.
class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const ms = (options.processorOptions && options.processorOptions.blockMs) || 50;
    this.size = Math.max(128, Math.round(sampleRate * ms / 1000));
    this.block = new Float32Array(this.size);
    this.filled = 0;
    this.port.onmessage = (e) => {
      if (e.data === "flush" && this.filled > 0) this.post();
    };
  }

  post() {
    const out = this.block.slice(0, this.filled);
    let sum = 0;
    for (let i = 0; i < out.length; i++) sum += out[i] * out[i];
    this.port.postMessage({samples: out, rms: Math.sqrt(sum / Math.max(1, out.length))}, [out.buffer]);
    this.filled = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const n = input[0].length;
    for (let i = 0; i < n; i++) {
      let v = 0;
      for (let c = 0; c < input.length; c++) v += input[c][i];
      this.block[this.filled++] = v / input.length;
      if (this.filled === this.size) this.post();
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
