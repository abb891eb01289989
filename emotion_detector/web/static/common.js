// What the pages' scripts share (loaded first by base.html): the expression colours, the CSRF token,
// the label of an expression, saving text as a download, and the API from a signed-in page.
"use strict";

const COLOURS = { angry: "#e5484d", disgust: "#8e4ec6", fear: "#f76b15", happy: "#30a46c", sad: "#0090ff", surprise: "#ffc53d", neutral: "#8b8d98" };
const UNCERTAIN_COLOUR = "#d9d9de";  // a face whose top expression is below the model's calibrated threshold
// State-changing requests carry the page's CSRF token (checked when a signed-in session authenticates them).
const CSRF_TOKEN = document.querySelector('meta[name="csrf-token"]').content;

// "neutral 81%", or for a face the model cannot read with confidence "uncertain (maybe sad 38%)".
function expressionText(emotion) {
  const named = `${emotion.label} ${(emotion.confidence * 100).toFixed(0)}%`;
  return emotion.uncertain ? `uncertain (maybe ${named})` : named;
}

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url; link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// The API from a signed-in page: a session that has ended meanwhile (signed out elsewhere, the key revoked, the
// 12 hours over) answers 401; the person is sent to sign in again and comes back here, instead of a broken page.
async function apiFetch(url, options = {}) {
  const answer = await fetch(url, options);
  if (answer.status === 401) {
    window.location.assign(`/signin?next=${encodeURIComponent(window.location.pathname + window.location.search)}`);
    return new Promise(() => {});  // the page is going away: its caller waits rather than reports an error
  }
  return answer;
}
