/** A growable ring-buffer deque: O(1) push, shift and unshift, no per-item allocation. */
export class Deque<T> {
  #items: (T | undefined)[] = new Array(16);
  #head = 0;
  #size = 0;

  /** Items held. */
  get size(): number {
    return this.#size;
  }

  /** The first item, or undefined. */
  peek(): T | undefined {
    return this.#size === 0 ? undefined : this.#items[this.#head];
  }

  /** Appends at the tail. */
  push(item: T): void {
    if (this.#size === this.#items.length) this.#grow();
    this.#items[(this.#head + this.#size) & (this.#items.length - 1)] = item;
    this.#size++;
  }

  /** Inserts at the head. */
  unshift(item: T): void {
    if (this.#size === this.#items.length) this.#grow();
    this.#head = (this.#head - 1) & (this.#items.length - 1);
    this.#items[this.#head] = item;
    this.#size++;
  }

  /** Removes and returns the head. */
  shift(): T | undefined {
    if (this.#size === 0) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) & (this.#items.length - 1);
    this.#size--;
    return item;
  }

  /** The item `i` places from the head, or undefined. */
  at(i: number): T | undefined {
    return i < 0 || i >= this.#size
      ? undefined
      : this.#items[(this.#head + i) & (this.#items.length - 1)];
  }

  /** Removes and returns the item `i` places from the head (O(i)), or undefined. */
  removeAt(i: number): T | undefined {
    if (i === 0) return this.shift();
    if (i < 0 || i >= this.#size) return undefined;
    const mask = this.#items.length - 1;
    const item = this.#items[(this.#head + i) & mask];
    for (let k = i; k > 0; k--) {
      this.#items[(this.#head + k) & mask] = this.#items[(this.#head + k - 1) & mask];
    }
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) & mask;
    this.#size--;
    return item;
  }

  /** Keeps only the items for which `keep` is true, in order; returns how many were removed. */
  filter(keep: (item: T) => boolean): number {
    const n = this.#size;
    let w = 0;
    const mask = this.#items.length - 1;
    for (let r = 0; r < n; r++) {
      const item = this.#items[(this.#head + r) & mask] as T;
      if (keep(item)) this.#items[(this.#head + w++) & mask] = item;
    }
    for (let i = w; i < n; i++) this.#items[(this.#head + i) & mask] = undefined;
    this.#size = w;
    return n - w;
  }

  /** Iterates from head to tail. */
  *[Symbol.iterator](): IterableIterator<T> {
    const mask = this.#items.length - 1;
    for (let i = 0; i < this.#size; i++) yield this.#items[(this.#head + i) & mask] as T;
  }

  #grow(): void {
    const old = this.#items;
    const items: (T | undefined)[] = new Array(old.length * 2);
    for (let i = 0; i < this.#size; i++) items[i] = old[(this.#head + i) & (old.length - 1)];
    this.#items = items;
    this.#head = 0;
  }
}
