// Starts the what-if worker (frontend/src/whatif.rs): its wasm-bindgen script and module beside
// this file. A failure to load either is posted to the page as the worker's answer `{failed}`, so
// the plan view shows it instead of waiting.
(function () {
    function failed(what, err) {
        self.postMessage({ failed: 'the what-if worker could not load ' + what + ': ' + err });
    }
    try {
        importScripts('./whatif.js');
    } catch (err) {
        failed('whatif.js', err);
        return;
    }
    wasm_bindgen({ module_or_path: './whatif_bg.wasm' }).catch(function (err) {
        failed('whatif_bg.wasm', err);
    });
})();
