// Randomness of the simulated people: think times, choices, places in the city.

export function uniform(lo, hi) {
  return lo + Math.random() * (hi - lo);
}

// A think time in milliseconds: log-normal around `medianS` seconds, as people's pauses are,
// cut at four times the median so one user cannot stall for minutes.
export function thinkMs(medianS) {
  const u1 = Math.random() || 1e-9;
  const u2 = Math.random();
  const normal = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  return Math.min(Math.exp(0.5 * normal) * medianS, 4 * medianS) * 1000;
}

export function chance(p) {
  return Math.random() < p;
}

export function pick(items) {
  return items[Math.floor(Math.random() * items.length)];
}

// A point in the plan's city box.
export function placeIn(city) {
  return { lat: uniform(city.lat[0], city.lat[1]), lng: uniform(city.lng[0], city.lng[1]) };
}

// `from` moved `metres` in a random direction: a driver nearby, a destination across town.
export function near(from, metres) {
  const angle = Math.random() * 2 * Math.PI;
  const dLat = (metres * Math.cos(angle)) / 111320;
  const dLng = (metres * Math.sin(angle)) / (111320 * Math.cos((from.lat * Math.PI) / 180));
  return { lat: from.lat + dLat, lng: from.lng + dLng };
}
