/**
 * Cursor pagination. List responses look like `{ data: [...], has_more, next_cursor }`;
 * the next page is requested with the same filters plus `cursor=<next_cursor>`.
 */

export type Query = Record<string, string | number | boolean | undefined | null>;
export type Fetcher = (query: Query) => Promise<unknown>;

export const CURSOR_PARAM = 'cursor';

export function pageItems<T>(body: unknown): T[] {
  if (Array.isArray(body)) return body as T[];
  if (body && typeof body === 'object') {
    const b = body as Record<string, unknown>;
    for (const key of ['data', 'items', 'results']) if (Array.isArray(b[key])) return b[key] as T[];
  }
  return [];
}

export function nextPageQuery(body: unknown, query: Query): Query | null {
  if (!body || typeof body !== 'object' || Array.isArray(body)) return null;
  const cursor = (body as Record<string, unknown>).next_cursor;
  return cursor ? { ...query, [CURSOR_PARAM]: String(cursor) } : null;
}

/** One page of results. `for await` over it yields every item of the following pages too. */
export class Page<T> implements AsyncIterable<T> {
  readonly data: T[];
  readonly hasMore: boolean;
  readonly nextCursor: string | null;

  constructor(
    private readonly body: unknown,
    private readonly query: Query,
    private readonly fetcher: Fetcher,
  ) {
    this.data = pageItems<T>(body);
    const b = (body && typeof body === 'object' && !Array.isArray(body) ? body : {}) as Record<string, unknown>;
    this.nextCursor = typeof b.next_cursor === 'string' ? b.next_cursor : null;
    this.hasMore = typeof b.has_more === 'boolean' ? b.has_more : this.nextCursor !== null;
  }

  hasNextPage(): boolean {
    return this.data.length > 0 && nextPageQuery(this.body, this.query) !== null;
  }

  async getNextPage(): Promise<Page<T> | null> {
    const q = nextPageQuery(this.body, this.query);
    if (!q || this.data.length === 0) return null;
    return new Page<T>(await this.fetcher(q), q, this.fetcher);
  }

  async *iterPages(): AsyncGenerator<Page<T>> {
    let page: Page<T> | null = this;
    while (page) {
      yield page;
      page = await page.getNextPage();
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for await (const page of this.iterPages()) yield* page.data;
  }
}

/**
 * What `list()` returns: `await` it for the first page, or `for await (const x of list())`
 * for every item of every page.
 */
export class PagePromise<T> implements PromiseLike<Page<T>>, AsyncIterable<T> {
  private promise: Promise<Page<T>> | null = null;

  constructor(
    private readonly query: Query,
    private readonly fetcher: Fetcher,
  ) {}

  private first(): Promise<Page<T>> {
    this.promise ??= this.fetcher(this.query).then((body) => new Page<T>(body, this.query, this.fetcher));
    return this.promise;
  }

  then<R1 = Page<T>, R2 = never>(
    onfulfilled?: ((value: Page<T>) => R1 | PromiseLike<R1>) | null,
    onrejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.first().then(onfulfilled, onrejected);
  }

  catch<R = never>(onrejected?: ((reason: unknown) => R | PromiseLike<R>) | null): Promise<Page<T> | R> {
    return this.first().catch(onrejected);
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    yield* await this.first();
  }
}
