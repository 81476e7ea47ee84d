// Who is signed in, and the sign-in form / "Signed in as" box in the top bar.
// The browser never sees a token: SignIn makes the BFF set an HttpOnly session
// cookie, and GetSession tells whether that cookie still names a live session.
import { Code } from "@connectrpc/connect";
import type { Api } from "./api.js";
import { h } from "./dom.js";
import { clearError, hasCode, showError } from "./errors.js";
import type { Session } from "./gen/tailor/web/v1/session_pb.js";

type Listener = (session: Session | undefined) => void;

/** The signed-in user, if any; views subscribe to changes. */
export class SessionStore {
  private current: Session | undefined;
  private readonly listeners = new Set<Listener>();

  get session(): Session | undefined {
    return this.current;
  }

  set(session: Session | undefined): void {
    this.current = session;
    for (const listener of this.listeners) listener(session);
  }

  subscribe(listener: Listener): void {
    this.listeners.add(listener);
  }
}

export function mountSessionArea(root: HTMLElement, api: Api, store: SessionStore): void {
  const render = (session: Session | undefined) => {
    root.replaceChildren(session ? signedIn(session) : signInForm());
  };

  const signInForm = () => {
    const username = h("input", { name: "username", autocomplete: "username", placeholder: "User name", required: "", testid: "username" });
    const password = h("input", { name: "password", type: "password", autocomplete: "current-password", placeholder: "Password", required: "", testid: "password" });
    const submit = h("button", { type: "submit", testid: "sign-in-button" }, "Sign in");
    const form = h("form", { class: "sign-in", testid: "sign-in-form" }, username, password, submit);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearError();
      submit.disabled = true;
      try {
        const response = await api.session.signIn({ username: username.value, password: password.value });
        store.set(response.session);
      } catch (error) {
        showError("Sign-in failed", error);
        submit.disabled = false;
      }
    });
    return form;
  };

  const signedIn = (session: Session) => {
    const signOut = h("button", { type: "button", class: "link", testid: "sign-out-button" }, "Sign out");
    signOut.addEventListener("click", async () => {
      clearError();
      signOut.disabled = true;
      try {
        await api.session.signOut({});
        store.set(undefined);
      } catch (error) {
        showError("Sign-out failed", error);
        signOut.disabled = false;
      }
    });
    return h("div", { class: "signed-in" }, h("span", { testid: "signed-in-as" }, `Signed in as ${session.displayName}`), signOut);
  };

  store.subscribe(render);
  render(undefined);
}

/** Asks the BFF whether the session cookie (if any) is still live. */
export async function restoreSession(api: Api, store: SessionStore): Promise<void> {
  try {
    const response = await api.session.getSession({});
    store.set(response.session);
  } catch (error) {
    // UNAUTHENTICATED is the normal answer for a visitor who is not signed in.
    if (!hasCode(error, Code.Unauthenticated)) showError("Could not check the session", error);
  }
}
