// The web app's entry: opens the device's storage, restores what it synced, and shows the
// app.
import { render } from "preact";
import { App } from "./app.js";
import { Model } from "./model.js";

const model = await Model.open(location.origin);
const root = document.getElementById("app")!;
// The page's "Loading" line goes; Preact keeps to what it renders itself.
root.replaceChildren();
render(<App model={model} />, root);
